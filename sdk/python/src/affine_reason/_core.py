"""What the sync and async clients share: requests, credentials, sessions and retry policy.

No I/O happens here, so :mod:`.client` and :mod:`.async_client` differ only in ``await``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from . import _json
from ._version import __version__
from .errors import ApiError, ProtocolError
from .keys import resolve_keypair
from .models import Session
from .ratelimit import RateLimit
from .signing import Keypair, has_credentials, sign_btauth, sign_epistula

Scheme = Literal["btauth", "epistula"]
#: Status codes retried (with ``Retry-After`` when the gateway sends one).
RETRY_STATUSES = frozenset({429, 503})
#: Error codes of a 401 that a fresh session token cures.
SESSION_CODES = frozenset({"token_expired", "token_invalid", "token_revoked"})
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
SESSION_PATH = "/v1/auth/session"

Auth = Literal["caller", "none", "session"]


@dataclass(frozen=True, slots=True)
class Call:
    """One API call as the client will send it."""

    method: str
    path: str
    """Path and ``?query`` relative to the base URL, exactly as signed."""
    body: bytes = b""
    auth: Auth = "caller"
    idempotent: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    max_retries: int | None = None
    stream: bool = False


@dataclass(slots=True)
class _SessionState:
    session: Session
    obtained: float
    lifetime: float


class Core:
    """Configuration and the pure decisions of a client."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        keypair: Any,
        receiver: str | None,
        scheme: str,
        session: bool,
        max_retries: int,
        retry_non_idempotent: bool,
        max_retry_wait: float,
        headers: Mapping[str, str] | None,
    ) -> None:
        if scheme not in ("btauth", "epistula"):
            raise ValueError(f"scheme must be 'btauth' or 'epistula', not {scheme!r}")
        if token is not None and keypair is not None:
            # The gateway refuses two credentials at once (401 auth_malformed).
            raise ValueError("give either token or keypair, not both")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.keypair: Keypair | None = resolve_keypair(keypair) if keypair is not None else None
        if self.keypair is not None and not receiver:
            raise ValueError(
                "a signed client needs receiver: the gateway's hotkey (GATEWAY_HOTKEY) "
                "the signatures are bound to"
            )
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = str(url).rstrip("/")
        self._prefix = url.raw_path.decode("ascii").rstrip("/")
        self.token = token
        self.receiver = receiver
        self.scheme: Scheme = "epistula" if scheme == "epistula" else "btauth"
        self.use_session = bool(session) and self.keypair is not None
        self.max_retries = max_retries
        self.retry_non_idempotent = retry_non_idempotent
        self.max_retry_wait = max_retry_wait
        self.default_headers = {
            "User-Agent": f"affine-reason-python/{__version__}",
            "Accept": "application/json",
            **(headers or {}),
        }
        self._session: _SessionState | None = None
        self._session_lock = threading.Lock()

    # --- requests -------------------------------------------------------------------------

    def url(self, call: Call) -> str:
        return self.base_url + call.path

    def signed_path(self, call: Call) -> str:
        """The request target the gateway sees: any base URL path, then the call's."""
        return self._prefix + call.path

    def headers(self, call: Call, session_token: str | None) -> dict[str, str]:
        """Headers of one attempt; a signed call is signed afresh for every attempt."""
        out = dict(self.default_headers)
        if call.body or call.method in ("POST", "PUT"):
            out["Content-Type"] = "application/json"
        if call.stream:
            out["Accept"] = "text/event-stream"
        caller_creds = has_credentials(call.headers)
        out.update(call.headers)
        if caller_creds or call.auth == "none":
            return out
        if call.auth == "session":
            out.update(self._sign(call, "btauth"))
        elif self.token is not None:
            out["Authorization"] = f"Bearer {self.token}"
        elif session_token is not None:
            out["Authorization"] = f"Bearer {session_token}"
        elif self.keypair is not None:
            out.update(self._sign(call, self.scheme))
        return out

    def _sign(self, call: Call, scheme: Scheme) -> dict[str, str]:
        assert self.keypair is not None
        assert self.receiver is not None
        if scheme == "epistula":
            return sign_epistula(self.keypair, body=call.body, receiver_ss58=self.receiver)
        return sign_btauth(
            self.keypair,
            method=call.method,
            path=self.signed_path(call),
            body=call.body,
            receiver_ss58=self.receiver,
        )

    # --- sessions -------------------------------------------------------------------------

    def wants_session(self, call: Call) -> bool:
        return (
            self.use_session
            and call.auth == "caller"
            and self.token is None
            and not has_credentials(call.headers)
        )

    def current_session(self, now: float | None = None) -> str | None:
        """The session token while it is comfortably valid, else None (sign a new one)."""
        with self._session_lock:
            state = self._session
            if state is None:
                return None
            now = time.time() if now is None else now
            # Renew shortly before expiry: a tenth of the lifetime, between 5 s and 60 s.
            margin = min(60.0, max(5.0, state.lifetime / 10))
            if state.session.expires_at.timestamp() - now <= margin:
                return None
            return state.session.token

    def store_session(self, session: Session, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._session_lock:
            self._session = _SessionState(
                session=session,
                obtained=now,
                lifetime=max(0.0, session.expires_at.timestamp() - now),
            )

    def drop_session(self, token: str | None) -> None:
        with self._session_lock:
            if self._session is not None and self._session.session.token == token:
                self._session = None

    @property
    def session(self) -> Session | None:
        with self._session_lock:
            return self._session.session if self._session else None

    def session_call(self) -> Call:
        return Call("POST", SESSION_PATH, b"", auth="session", idempotent=True)

    # --- retries --------------------------------------------------------------------------

    def retries_for(self, call: Call) -> int:
        if call.max_retries is not None:
            return max(0, call.max_retries)
        if has_credentials(call.headers):
            # A pre-signed request replays its nonce: the gateway would refuse it.
            return 0
        if call.idempotent or self.retry_non_idempotent:
            return self.max_retries
        return 0

    @staticmethod
    def retry_delay_connect(attempt: int) -> float:
        """Backoff before another try after a connection that could not be made."""
        return float(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))

    def retry_delay(self, attempt: int, error: ApiError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when it must not be retried."""
        if error.status not in RETRY_STATUSES:
            return None
        if error.retry_after is not None:
            delay = error.retry_after
        else:
            delay = self.retry_delay_connect(attempt)
        if delay > self.max_retry_wait:
            return None
        return delay

    # --- answers --------------------------------------------------------------------------

    @staticmethod
    def error(response: httpx.Response, body: bytes) -> ApiError:
        return ApiError.from_response(
            response.status_code, response.headers, body, RateLimit.from_headers(response.headers)
        )

    @staticmethod
    def json(response: httpx.Response) -> Any:
        ctype = response.headers.get("content-type", "")
        if "json" not in ctype:
            raise ProtocolError(
                f"expected JSON from {response.request.url.path}, got {ctype or 'no type'}"
            )
        return _json.loads(response.content)


def query(**params: object) -> str:
    """``?a=1&b=2`` of the parameters that are set (dates as YYYY-MM-DD), or ""."""
    parts: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()[:10]
        parts.append((key.rstrip("_"), str(value)))
    if not parts:
        return ""
    return "?" + str(httpx.QueryParams(parts))


def reason_body(input: Any, *, stream: bool = False, **fields: Any) -> bytes:
    """The exact JSON bytes :meth:`Client.reason` sends (to sign them yourself).

    Fields left as None are omitted; ``stream`` is sent only when true.
    """
    body: dict[str, Any] = {"input": input}
    body.update({k: v for k, v in fields.items() if v is not None})
    if stream:
        body["stream"] = True
    return _json.dumps(body)


def chat_body(messages: Any, *, model: str, stream: bool = False, **fields: Any) -> bytes:
    """The exact JSON bytes :meth:`Client.chat_completions` sends."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update({k: v for k, v in fields.items() if v is not None})
    if stream:
        body["stream"] = True
    return _json.dumps(body)
