"""Typed results of every caller endpoint (docs/API.md; openapi/openapi.json).

Every model is a frozen dataclass built by ``from_json``; fields the gateway adds later
(additive changes within v1) are ignored. Money is ``int`` rao, and TAO is a
:class:`~decimal.Decimal`, never a float.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ._json import Reader
from .ratelimit import RateLimit

RAO_PER_TAO = 10**9


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request cost: ``rao`` (integer, what is charged) and the same in TAO."""

    rao: int
    tao: Decimal

    @classmethod
    def from_rao(cls, rao: int) -> Cost:
        """An amount of rao, with its exact TAO (9 decimal places)."""
        return cls(rao=rao, tao=(Decimal(rao) / RAO_PER_TAO).quantize(Decimal("0.000000001")))

    @classmethod
    def from_json(cls, r: Reader) -> Cost:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(rao=r.integer("rao"), tao=r.decimal("tao"))


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one request; ``output_tokens`` includes ``reasoning_tokens``."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int

    @classmethod
    def from_json(cls, r: Reader) -> Usage:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            input_tokens=r.integer("input_tokens"),
            output_tokens=r.integer("output_tokens"),
            reasoning_tokens=r.integer("reasoning_tokens"),
            total_tokens=r.integer("total_tokens"),
        )


@dataclass(frozen=True, slots=True)
class Timing:
    """Time to the first token and the whole request, as the gateway saw them."""

    ttft_ms: int
    total_ms: int

    @classmethod
    def from_json(cls, r: Reader) -> Timing:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(ttft_ms=r.integer("ttft_ms"), total_ms=r.integer("total_ms"))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The model that served: ``source`` is ``affine``, ``static``, ``pinned`` or ``fallback``."""

    id: str
    source: str
    revision: str | None = None
    miner_hotkey: str | None = None
    uid: int | None = None
    since_block: int | None = None

    @classmethod
    def from_json(cls, r: Reader) -> ModelInfo:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            id=r.string("id"),
            source=r.string("source"),
            revision=r.opt_str("revision"),
            miner_hotkey=r.opt_str("miner_hotkey"),
            uid=r.opt_int("uid"),
            since_block=r.opt_int("since_block"),
        )


@dataclass(frozen=True, slots=True)
class ReasonDone:
    """A streamed answer's end (the ``done`` event): the result without the texts."""

    id: str
    object: str
    created: int
    model: ModelInfo
    finish_reason: str
    usage: Usage
    cost: Cost
    timing: Timing
    request_id: str | None = None
    rate_limit: RateLimit | None = None

    @classmethod
    def from_json(
        cls, r: Reader, request_id: str | None = None, rate_limit: RateLimit | None = None
    ) -> ReasonDone:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            id=r.string("id"),
            object=r.string("object"),
            created=r.integer("created"),
            model=ModelInfo.from_json(r.obj("model")),
            finish_reason=r.string("finish_reason"),
            usage=Usage.from_json(r.obj("usage")),
            cost=Cost.from_json(r.obj("cost")),
            timing=Timing.from_json(r.obj("timing")),
            request_id=request_id,
            rate_limit=rate_limit,
        )


@dataclass(frozen=True, slots=True)
class ReasonResult:
    """A whole ``/v1/reason`` answer, with the answer's ``X-Request-Id`` and ``RateLimit``."""

    id: str
    object: str
    created: int
    model: ModelInfo
    output: str
    reasoning: str | None
    finish_reason: str
    usage: Usage
    cost: Cost
    timing: Timing
    request_id: str | None = None
    rate_limit: RateLimit | None = None

    @classmethod
    def from_json(
        cls, r: Reader, request_id: str | None = None, rate_limit: RateLimit | None = None
    ) -> ReasonResult:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        done = ReasonDone.from_json(r, request_id, rate_limit)
        return cls(
            id=done.id,
            object=done.object,
            created=done.created,
            model=done.model,
            output=r.string("output"),
            reasoning=r.opt_str("reasoning"),
            finish_reason=done.finish_reason,
            usage=done.usage,
            cost=done.cost,
            timing=done.timing,
            request_id=request_id,
            rate_limit=rate_limit,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan's limits and prices (rao per 1M tokens; both 0 on a provider-priced plan)."""

    name: str
    requests_per_minute: int
    tokens_per_minute: int
    tokens_per_day: int
    max_concurrent: int
    max_tokens: int
    input_rao_per_mtok: int
    output_rao_per_mtok: int
    pricing: str
    markup_percent: int | None = None

    @classmethod
    def from_json(cls, r: Reader) -> Plan:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            name=r.string("name"),
            requests_per_minute=r.integer("requests_per_minute"),
            tokens_per_minute=r.integer("tokens_per_minute"),
            tokens_per_day=r.integer("tokens_per_day"),
            max_concurrent=r.integer("max_concurrent"),
            max_tokens=r.integer("max_tokens"),
            input_rao_per_mtok=r.integer("input_rao_per_mtok"),
            output_rao_per_mtok=r.integer("output_rao_per_mtok"),
            pricing=r.string("pricing"),
            markup_percent=r.opt_int("markup_percent"),
        )


@dataclass(frozen=True, slots=True)
class Remaining:
    """What is left of the plan's limits right now."""

    requests_per_minute: int
    tokens_per_minute: int
    tokens_per_day: int
    in_flight: int

    @classmethod
    def from_json(cls, r: Reader) -> Remaining:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            requests_per_minute=r.integer("requests_per_minute"),
            tokens_per_minute=r.integer("tokens_per_minute"),
            tokens_per_day=r.integer("tokens_per_day"),
            in_flight=r.integer("in_flight"),
        )


@dataclass(frozen=True, slots=True)
class SubnetQuota:
    """The subnet aggregate the caller counts against."""

    netuid: int
    limits: Plan
    remaining: Remaining

    @classmethod
    def from_json(cls, r: Reader) -> SubnetQuota:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            netuid=r.integer("netuid"),
            limits=Plan.from_json(r.obj("limits")),
            remaining=Remaining.from_json(r.obj("remaining")),
        )


@dataclass(frozen=True, slots=True)
class Membership:
    """A synced subnet the caller's hotkey is registered in (metagraph snapshot)."""

    netuid: int
    uid: int
    validator_permit: bool
    alpha_stake_rao: int
    tao_stake_rao: int
    total_stake_rao: int
    coldkey: str
    block: int

    @classmethod
    def from_json(cls, r: Reader) -> Membership:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            netuid=r.integer("netuid"),
            uid=r.integer("uid"),
            validator_permit=r.boolean("validator_permit"),
            alpha_stake_rao=r.integer("alpha_stake_rao"),
            tao_stake_rao=r.integer("tao_stake_rao"),
            total_stake_rao=r.integer("total_stake_rao"),
            coldkey=r.string("coldkey"),
            block=r.integer("block"),
        )


@dataclass(frozen=True, slots=True)
class Deposit:
    """A TAO transfer to the deposit address; ``from_`` is the sending coldkey."""

    reference: str
    block: int
    event_index: int
    from_: str
    amount_rao: int
    status: str
    recorded_at_ms: int
    account: str | None = None
    assigned_by: str | None = None

    @classmethod
    def from_json(cls, r: Reader) -> Deposit:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            reference=r.string("reference"),
            block=r.integer("block"),
            event_index=r.integer("event_index"),
            from_=r.string("from"),
            amount_rao=r.integer("amount_rao"),
            status=r.string("status"),
            recorded_at_ms=r.integer("recorded_at_ms"),
            account=r.opt_str("account"),
            assigned_by=r.opt_str("assigned_by"),
        )


@dataclass(frozen=True, slots=True)
class ColdkeyLink:
    """A coldkey linked to an account: its TAO transfers credit that account."""

    coldkey: str
    account: str
    linked_at: dt.datetime
    created: bool = True
    """True when this call made the link (201), False when it existed already (200)."""

    @classmethod
    def from_json(cls, r: Reader, created: bool = True) -> ColdkeyLink:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            coldkey=r.string("coldkey"),
            account=r.string("account"),
            linked_at=r.datetime("linked_at"),
            created=created,
        )


@dataclass(frozen=True, slots=True)
class Account:
    """``GET /v1/account``: the caller's account, limits, what is left, balance and holds."""

    id: str
    kind: str
    plan: str
    billing: str
    credit_limit_rao: int
    balance_rao: int
    disabled: bool
    limits: Plan
    remaining: Remaining
    holds_rao: int
    netuid: int | None = None
    subnet: SubnetQuota | None = None
    membership: tuple[Membership, ...] = ()
    deposits: tuple[Deposit, ...] = ()
    coldkeys: tuple[ColdkeyLink, ...] = ()
    request_id: str | None = None

    @property
    def balance(self) -> Cost:
        """The balance as rao and TAO (negative on a postpaid account that owes)."""
        return Cost.from_rao(self.balance_rao)

    @classmethod
    def from_json(cls, r: Reader, request_id: str | None = None) -> Account:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        subnet = r.opt_obj("subnet")
        return cls(
            id=r.string("id"),
            kind=r.string("kind"),
            plan=r.string("plan"),
            billing=r.string("billing"),
            credit_limit_rao=r.integer("credit_limit_rao"),
            balance_rao=r.integer("balance_rao"),
            disabled=r.boolean("disabled"),
            limits=Plan.from_json(r.obj("limits")),
            remaining=Remaining.from_json(r.obj("remaining")),
            holds_rao=r.integer("holds_rao"),
            netuid=r.opt_int("netuid"),
            subnet=SubnetQuota.from_json(subnet) if subnet is not None else None,
            membership=tuple(
                Membership.from_json(m) for m in r.array("membership", required=False)
            ),
            deposits=tuple(Deposit.from_json(d) for d in r.array("deposits", required=False)),
            coldkeys=tuple(ColdkeyLink.from_json(c) for c in r.array("coldkeys", required=False)),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class Price:
    """A price per 1M tokens: ``rao`` (what is charged) and the same in TAO, exactly."""

    rao: int
    tao: Decimal

    @classmethod
    def from_json(cls, r: Reader) -> Price:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(rao=r.integer("rao"), tao=r.decimal("tao"))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What a request served by the model costs the caller, on the caller's plan."""

    input: Price
    output: Price

    @classmethod
    def from_json(cls, r: Reader) -> ModelPrice:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(input=Price.from_json(r.obj("input")), output=Price.from_json(r.obj("output")))


@dataclass(frozen=True, slots=True)
class Model:
    """One entry of ``GET /v1/models`` (``affine-winner`` or the winner's concrete id)."""

    id: str
    object: str
    created: int
    owned_by: str
    price: ModelPrice | None = None

    @classmethod
    def from_json(cls, r: Reader) -> Model:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        price = r.opt_obj("price")
        return cls(
            id=r.string("id"),
            object=r.string("object"),
            created=r.integer("created"),
            owned_by=r.string("owned_by"),
            price=ModelPrice.from_json(price) if price is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Models:
    """``GET /v1/models``: iterate it, or look a model up by id."""

    data: tuple[Model, ...]
    request_id: str | None = None

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, model_id: str) -> Model | None:
        """The model with this id, or None."""
        return next((m for m in self.data if m.id == model_id), None)

    @classmethod
    def from_json(cls, r: Reader, request_id: str | None = None) -> Models:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(data=tuple(Model.from_json(m) for m in r.array("data")), request_id=request_id)


@dataclass(frozen=True, slots=True)
class ServingRule:
    """The operator's serving rule for a model (``rule`` is its index; the default is last)."""

    rule: int
    match: str
    url: str
    model_name: str

    @classmethod
    def from_json(cls, r: Reader) -> ServingRule:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            rule=r.integer("rule"),
            match=r.string("match"),
            url=r.string("url"),
            model_name=r.string("model_name"),
        )

    @classmethod
    def maybe(cls, r: Reader | None) -> ServingRule | None:
        """The rule, or None for a null one."""
        return cls.from_json(r) if r is not None else None


@dataclass(frozen=True, slots=True)
class PendingChampion:
    """A champion Affine named that does not serve yet (``deploying``, ``probing``, ``failed``)."""

    model: str
    since: dt.datetime
    state: str
    revision: str | None = None
    last_error: str | None = None
    serving: ServingRule | None = None

    @classmethod
    def from_json(cls, r: Reader) -> PendingChampion:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            model=r.string("model"),
            since=r.datetime("since"),
            state=r.string("state"),
            revision=r.opt_str("revision"),
            last_error=r.opt_str("last_error"),
            serving=ServingRule.maybe(r.opt_obj("serving")),
        )


@dataclass(frozen=True, slots=True)
class PastChampion:
    """One of Affine's past champions, tried after the winner's own upstream."""

    model: str
    uid: int
    ready: bool
    revision: str | None = None
    serving: ServingRule | None = None

    @classmethod
    def from_json(cls, r: Reader) -> PastChampion:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            model=r.string("model"),
            uid=r.integer("uid"),
            ready=r.boolean("ready"),
            revision=r.opt_str("revision"),
            serving=ServingRule.maybe(r.opt_obj("serving")),
        )


@dataclass(frozen=True, slots=True)
class Winner:
    """``GET /v1/winner``: the model serving now, since when, where, and what is waiting."""

    model: ModelInfo
    since: dt.datetime
    upstream: str
    serving: ServingRule | None = None
    pending: PendingChampion | None = None
    past_champions: tuple[PastChampion, ...] = ()
    request_id: str | None = None

    @classmethod
    def from_json(cls, r: Reader, request_id: str | None = None) -> Winner:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        pending = r.opt_obj("pending")
        return cls(
            model=ModelInfo.from_json(r.obj("model")),
            since=r.datetime("since"),
            upstream=r.string("upstream"),
            serving=ServingRule.maybe(r.opt_obj("serving")),
            pending=PendingChampion.from_json(pending) if pending is not None else None,
            past_champions=tuple(
                PastChampion.from_json(p) for p in r.array("past_champions", required=False)
            ),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Requests, tokens and rao over a period."""

    requests: int
    input_tokens: int
    output_tokens: int
    rao: int

    @classmethod
    def from_json(cls, r: Reader) -> UsageTotals:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            requests=r.integer("requests"),
            input_tokens=r.integer("input_tokens"),
            output_tokens=r.integer("output_tokens"),
            rao=r.integer("rao"),
        )


@dataclass(frozen=True, slots=True)
class UsageDay:
    """One UTC day of the caller's usage (a request counts on the day it was settled)."""

    date: dt.date
    requests: int
    input_tokens: int
    output_tokens: int
    rao: int

    @classmethod
    def from_json(cls, r: Reader) -> UsageDay:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        t = UsageTotals.from_json(r)
        return cls(
            date=r.date("date"),
            requests=t.requests,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            rao=t.rao,
        )


@dataclass(frozen=True, slots=True)
class UsageReport:
    """``GET /v1/usage``: the caller's days (``from_`` … ``to``, UTC, both included) and total."""

    account: str
    from_: dt.date
    to: dt.date
    days: tuple[UsageDay, ...]
    total: UsageTotals
    request_id: str | None = None

    @classmethod
    def from_json(cls, r: Reader, request_id: str | None = None) -> UsageReport:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            account=r.string("account"),
            from_=r.date("from"),
            to=r.date("to"),
            days=tuple(UsageDay.from_json(d) for d in r.array("days")),
            total=UsageTotals.from_json(r.obj("total")),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class StatsDay:
    """One UTC day of public serving statistics (no identities, no money)."""

    date: dt.date
    requests: int
    input_tokens: int
    output_tokens: int
    unique_callers: int

    @classmethod
    def from_json(cls, r: Reader) -> StatsDay:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            date=r.date("date"),
            requests=r.integer("requests"),
            input_tokens=r.integer("input_tokens"),
            output_tokens=r.integer("output_tokens"),
            unique_callers=r.integer("unique_callers"),
        )


@dataclass(frozen=True, slots=True)
class Stats:
    """``GET /v1/stats``: public totals per day over every caller."""

    from_: dt.date
    to: dt.date
    days: tuple[StatsDay, ...]
    request_id: str | None = None

    @classmethod
    def from_json(cls, r: Reader, request_id: str | None = None) -> Stats:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(
            from_=r.date("from"),
            to=r.date("to"),
            days=tuple(StatsDay.from_json(d) for d in r.array("days")),
            request_id=request_id,
        )


@dataclass(frozen=True, slots=True)
class Session:
    """A session token from ``POST /v1/auth/session``: a bearer token until ``expires_at``."""

    token: str
    expires_at: dt.datetime

    def __repr__(self) -> str:
        # The token is a credential: keep it out of logs and tracebacks.
        return f"Session(token='…', expires_at={self.expires_at.isoformat()!r})"

    @classmethod
    def from_json(cls, r: Reader) -> Session:
        """Reads the gateway's JSON object (fields added later are ignored)."""
        return cls(token=r.string("token"), expires_at=r.datetime("expires_at"))


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    """A whole ``/v1/chat/completions`` answer: the provider's JSON as it came, plus metering.

    ``data`` is the OpenAI-shaped ``chat.completion`` object; ``cost`` comes from
    ``X-Affine-Cost-Rao`` and ``model`` from ``X-Affine-Model``.
    """

    data: Mapping[str, Any]
    cost: Cost | None
    model: str | None
    request_id: str | None = None
    rate_limit: RateLimit | None = None

    @property
    def content(self) -> str | None:
        """The first choice's message content, when there is one."""
        try:
            value = self.data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    """One ``chat.completion.chunk`` of a streamed chat completion, as the provider sent it."""

    data: Mapping[str, Any]

    @property
    def delta(self) -> str:
        """The first choice's content delta ("" for role, usage and empty chunks)."""
        try:
            value = self.data["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
        return value if isinstance(value, str) else ""

    @property
    def usage(self) -> Mapping[str, Any] | None:
        """The final usage chunk's ``usage`` object."""
        value = self.data.get("usage")
        return value if isinstance(value, Mapping) else None
