"""Client for the Affine Reasoning API gateway.

>>> from affine_reason import Client
>>> client = Client("http://localhost:8080", token="eyJ…")          # doctest: +SKIP
>>> result = client.reason("2+2?")                                   # doctest: +SKIP
>>> result.output, result.cost.rao, result.rate_limit["rpm"].remaining  # doctest: +SKIP
"""

from ._core import Scheme, chat_body, reason_body
from ._version import __version__
from .async_client import AsyncChatStream, AsyncClient, AsyncReasonStream
from .client import ChatStream, Client, ReasonStream
from .errors import AffineReasonError, ApiError, ProtocolError, TransportError
from .events import DoneEvent, ErrorEvent, OutputEvent, ReasonEvent, ReasoningEvent
from .models import (
    Account,
    ChatCompletion,
    ChatCompletionChunk,
    ColdkeyLink,
    Cost,
    Deposit,
    Membership,
    Model,
    ModelInfo,
    ModelPrice,
    Models,
    PastChampion,
    PendingChampion,
    Plan,
    Price,
    ReasonDone,
    ReasonResult,
    Remaining,
    ServingRule,
    Session,
    Stats,
    StatsDay,
    SubnetQuota,
    Timing,
    Usage,
    UsageDay,
    UsageReport,
    UsageTotals,
    Winner,
)
from .ratelimit import RateLimit, RateLimitPolicy
from .signing import Keypair, sign_btauth, sign_epistula

__all__ = [
    "Account",
    "AffineReasonError",
    "ApiError",
    "AsyncChatStream",
    "AsyncClient",
    "AsyncReasonStream",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStream",
    "Client",
    "ColdkeyLink",
    "Cost",
    "Deposit",
    "DoneEvent",
    "ErrorEvent",
    "Keypair",
    "Membership",
    "Model",
    "ModelInfo",
    "ModelPrice",
    "Models",
    "OutputEvent",
    "PastChampion",
    "PendingChampion",
    "Plan",
    "Price",
    "ProtocolError",
    "RateLimit",
    "RateLimitPolicy",
    "ReasonDone",
    "ReasonEvent",
    "ReasonResult",
    "ReasonStream",
    "ReasoningEvent",
    "Remaining",
    "Scheme",
    "ServingRule",
    "Session",
    "Stats",
    "StatsDay",
    "SubnetQuota",
    "Timing",
    "TransportError",
    "Usage",
    "UsageDay",
    "UsageReport",
    "UsageTotals",
    "Winner",
    "__version__",
    "chat_body",
    "reason_body",
    "sign_btauth",
    "sign_epistula",
]
