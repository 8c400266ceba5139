"""Exceptions: every failure the gateway reports is an :class:`ApiError` with its stable code."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ratelimit import RateLimit


class AffineReasonError(Exception):
    """Base class of everything this package raises on purpose."""


class TransportError(AffineReasonError):
    """The gateway could not be reached, or the connection broke (no HTTP answer to read)."""


class ProtocolError(AffineReasonError):
    """The gateway answered something this client does not understand (a bug or a proxy)."""


class ApiError(AffineReasonError):
    """An error answer of the gateway (RFC 9457 problem, or the OpenAI error shape).

    ``code`` is the stable, machine-readable part (``rate_limited``, ``insufficient_balance``,
    …; docs/API.md §8). Treat a code you do not know by its ``status``. ``retry_after`` is the
    ``Retry-After`` header in seconds (None when absent), ``request_id`` the ``X-Request-Id``
    to quote to an operator.
    """

    status: int
    code: str
    message: str
    request_id: str | None
    retry_after: float | None
    title: str | None
    type: str | None
    rate_limit: RateLimit | None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
        title: str | None = None,
        type: str | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.title = title
        self.type = type
        self.rate_limit = rate_limit

    def __repr__(self) -> str:
        return (
            f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r}, "
            f"request_id={self.request_id!r}, retry_after={self.retry_after!r})"
        )

    @classmethod
    def from_problem(
        cls,
        problem: Mapping[str, Any],
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> ApiError:
        """An error from a problem object: an error answer's body or a stream's ``error`` event."""
        if isinstance(problem.get("error"), Mapping):
            # The OpenAI shape of /v1/chat/completions, /v1/responses and /v1/models.
            inner: Mapping[str, Any] = problem["error"]
            code = inner.get("code")
            message = inner.get("message")
            if not status:
                status = STATUS_BY_CODE.get(code, 0) if isinstance(code, str) else 0
            return cls(
                status,
                code if isinstance(code, str) else _fallback_code(status),
                message if isinstance(message, str) else "",
                request_id=request_id,
                retry_after=retry_after,
                type=inner.get("type") if isinstance(inner.get("type"), str) else None,
                rate_limit=rate_limit,
            )
        raw_status = problem.get("status")
        if status is None:
            status = raw_status if isinstance(raw_status, int) else 0
        code = problem.get("code")
        detail = problem.get("detail")
        title = problem.get("title")
        rid = problem.get("request_id")
        kind = problem.get("type")
        return cls(
            status,
            code if isinstance(code, str) else _fallback_code(status),
            detail if isinstance(detail, str) else (title if isinstance(title, str) else ""),
            request_id=rid if isinstance(rid, str) else request_id,
            retry_after=retry_after,
            title=title if isinstance(title, str) else None,
            type=kind if isinstance(kind, str) else None,
            rate_limit=rate_limit,
        )

    @classmethod
    def from_response(
        cls,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        rate_limit: RateLimit | None = None,
    ) -> ApiError:
        """An error from an HTTP answer whose status is not 2xx."""
        request_id = headers.get("x-request-id")
        retry_after = parse_retry_after(headers.get("retry-after"))
        try:
            parsed = json.loads(body, parse_float=Decimal) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            return cls.from_problem(
                parsed,
                status=status,
                request_id=request_id,
                retry_after=retry_after,
                rate_limit=rate_limit,
            )
        # Not the gateway's own error (a proxy in front of it): keep the status.
        return cls(
            status,
            _fallback_code(status),
            body[:200].decode("utf-8", "replace"),
            request_id=request_id,
            retry_after=retry_after,
            rate_limit=rate_limit,
        )


# The status of each stable code (docs/API.md §8), for an error that arrives without one: a
# chat stream's last `{"error": …}` event, after the answer's 200 was sent.
STATUS_BY_CODE = {
    "invalid_json": 400,
    "unknown_field": 400,
    "invalid_request": 400,
    "max_tokens_exceeds_plan": 400,
    "auth_missing": 401,
    "auth_malformed": 401,
    "bad_signature": 401,
    "stale_request": 401,
    "replayed_request": 401,
    "wrong_receiver": 401,
    "token_invalid": 401,
    "token_expired": 401,
    "token_revoked": 401,
    "insufficient_balance": 402,
    "forbidden": 403,
    "unregistered_hotkey": 403,
    "account_disabled": 403,
    "membership_required": 403,
    "membership_unknown": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "concurrency_limited": 429,
    "internal": 500,
    "upstream_error": 502,
    "no_winner": 503,
    "upstream_unavailable": 503,
    "store_unavailable": 503,
    "price_unavailable": 503,
    "upstream_timeout": 504,
}


def _fallback_code(status: int | None) -> str:
    return f"http_{status}" if status else "unknown"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
