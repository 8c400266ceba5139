"""The synchronous client."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
from httpx_sse import EventSource, SSEError

from . import _json
from ._core import (
    DEFAULT_TIMEOUT,
    SESSION_CODES,
    Call,
    Core,
    Scheme,
    chat_body,
    query,
    reason_body,
)
from ._json import Reader
from .errors import ApiError, ProtocolError, TransportError
from .events import ReasonEvent, parse_event
from .keys import resolve_keypair
from .models import (
    Account,
    ChatCompletion,
    ChatCompletionChunk,
    ColdkeyLink,
    Cost,
    Models,
    ReasonResult,
    Session,
    Stats,
    UsageReport,
    Winner,
)
from .ratelimit import RateLimit
from .responses import (
    TERMINAL,
    Response,
    ResponseEvent,
    parse_response_event,
    responses_body,
)
from .signing import coldkey_link_message

DateLike = Any  # a datetime.date, a datetime, or "YYYY-MM-DD"


E = TypeVar("E")
S = TypeVar("S", bound="_EventStream[Any]")
EventReader = Callable[[httpx.Response, str | None, RateLimit | None], Generator[E, None, None]]


class _EventStream(Generic[E]):
    """A streamed answer of typed events, opened on first use and closed with its connection."""

    def __init__(self, opener: Callable[[], httpx.Response], read: EventReader[E]) -> None:
        self._opener = opener
        self._read = read
        self._response: httpx.Response | None = None
        self._events: Generator[E, None, None] | None = None
        self._closed = False
        self.request_id: str | None = None
        """``X-Request-Id`` of the answer, once it has started."""
        self.rate_limit: RateLimit | None = None
        """The parsed ``RateLimit`` headers, once it has started."""
        self.model: str | None = None
        """``X-Affine-Model``: the model serving the stream, once it has started."""

    def _open(self) -> Iterator[E]:
        if self._events is None:
            if self._closed:
                raise ValueError("the stream is closed")
            response = self._opener()
            self._response = response
            self.request_id = response.headers.get("x-request-id")
            self.rate_limit = RateLimit.from_headers(response.headers)
            self.model = response.headers.get("x-affine-model")
            self._events = self._read(response, self.request_id, self.rate_limit)
        return self._events

    def __iter__(self) -> Iterator[E]:
        return self

    def __next__(self) -> E:
        return next(self._open())

    def __enter__(self: S) -> S:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._closed = True
        if self._events is not None:
            self._events.close()
        if self._response is not None:
            self._response.close()

    def __del__(self) -> None:
        # Dropping an unfinished stream must not keep the connection (and the request) alive.
        if self._response is not None and not self._response.is_closed:
            self._response.close()


class ReasonStream(_EventStream[ReasonEvent]):
    """A streamed ``/v1/reason`` answer: iterate it for typed events.

    The request is sent when iteration starts (or on ``with``); an HTTP error is raised then
    as :class:`ApiError`. Closing it — ``close()``, leaving the ``with`` block, breaking out of
    a ``for`` over it — closes the connection, and the gateway settles the request as
    ``client_closed`` (charged for what was produced).
    """

    def __init__(self, opener: Callable[[], httpx.Response]) -> None:
        super().__init__(opener, _reason_events)


class ResponseStream(_EventStream[ResponseEvent]):
    """A streamed ``/v1/responses`` answer: iterate it for typed ``response.*`` events.

    It ends after ``response.completed``, ``response.incomplete`` or ``response.failed`` (an
    ``error`` event comes just before the latter). Opening and closing are those of
    :class:`ReasonStream`.
    """

    def __init__(self, opener: Callable[[], httpx.Response]) -> None:
        super().__init__(opener, _response_events)


class ChatStream:
    """A streamed chat completion: iterate it for the provider's chunks, as they came.

    A provider failure mid-stream (a last ``{"error": …}`` event) raises :class:`ApiError`.
    Closing it closes the connection, as for :class:`ReasonStream`.
    """

    def __init__(self, opener: Callable[[], httpx.Response]) -> None:
        self._opener = opener
        self._response: httpx.Response | None = None
        self._chunks: Generator[ChatCompletionChunk, None, None] | None = None
        self.request_id: str | None = None
        self.rate_limit: RateLimit | None = None
        self.model: str | None = None

    def _open(self) -> Iterator[ChatCompletionChunk]:
        if self._chunks is None:
            response = self._opener()
            self._response = response
            self.request_id = response.headers.get("x-request-id")
            self.rate_limit = RateLimit.from_headers(response.headers)
            self.model = response.headers.get("x-affine-model")
            self._chunks = _chat_chunks(response, self.request_id, self.rate_limit)
        return self._chunks

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        return next(self._open())

    def __enter__(self) -> ChatStream:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._chunks is not None:
            self._chunks.close()
        if self._response is not None:
            self._response.close()

    def __del__(self) -> None:
        if self._response is not None and not self._response.is_closed:
            self._response.close()


def _reason_events(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> Generator[ReasonEvent, None, None]:
    # A plain function, not a method: a generator holding its stream would make a reference
    # cycle, and a dropped stream would then wait for the garbage collector to close.
    try:
        for sse in EventSource(response).iter_sse():
            event = parse_event(sse.event, sse.data, request_id, rate_limit)
            if event is None:
                continue
            yield event
            if event.type in ("done", "error"):
                return
        raise TransportError("the stream ended before its done or error event")
    except SSEError as e:
        raise ProtocolError(f"not an event stream: {e}") from e
    except httpx.TransportError as e:
        raise TransportError(f"the stream broke: {e}") from e
    finally:
        response.close()


def _response_events(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> Generator[ResponseEvent, None, None]:
    try:
        for sse in EventSource(response).iter_sse():
            event = parse_response_event(sse.event, sse.data, request_id, rate_limit)
            if event is None:
                continue
            yield event
            if event.type in TERMINAL:
                return
        raise TransportError("the stream ended before response.completed or response.failed")
    except SSEError as e:
        raise ProtocolError(f"not an event stream: {e}") from e
    except httpx.TransportError as e:
        raise TransportError(f"the stream broke: {e}") from e
    finally:
        response.close()


def _chat_chunks(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> Generator[ChatCompletionChunk, None, None]:
    try:
        for sse in EventSource(response).iter_sse():
            chunk = _chat_chunk(sse.data, request_id, rate_limit)
            if chunk is None:
                return
            yield chunk
        raise TransportError("the stream ended before data: [DONE]")
    except SSEError as e:
        raise ProtocolError(f"not an event stream: {e}") from e
    except httpx.TransportError as e:
        raise TransportError(f"the stream broke: {e}") from e
    finally:
        response.close()


def _chat_chunk(
    data: str, request_id: str | None, rate_limit: RateLimit | None
) -> ChatCompletionChunk | None:
    """A chunk; None at ``[DONE]``; raises the provider's mid-stream error."""
    if data.strip() == "[DONE]":
        return None
    value = _json.loads(data.encode())
    if not isinstance(value, dict):
        raise ProtocolError("chat stream: expected a JSON object per event")
    if isinstance(value.get("error"), dict):
        raise ApiError.from_problem(value, request_id=request_id, rate_limit=rate_limit)
    return ChatCompletionChunk(value)


def _chat_completion(response: httpx.Response, value: Any) -> ChatCompletion:
    if not isinstance(value, dict):
        raise ProtocolError("chat completion: expected a JSON object")
    raw_cost = response.headers.get("x-affine-cost-rao")
    return ChatCompletion(
        data=value,
        cost=Cost.from_rao(int(raw_cost)) if raw_cost and raw_cost.isdigit() else None,
        model=response.headers.get("x-affine-model"),
        request_id=response.headers.get("x-request-id"),
        rate_limit=RateLimit.from_headers(response.headers),
    )


class Client:
    """A synchronous client of the Affine Reasoning API.

    Credentials, one of: ``token`` (a bearer token: an enterprise token or a session token),
    or ``keypair`` (a ``bittensor_wallet.Keypair``, a wallet, or anything with
    ``ss58_address``, ``crypto_type`` and ``sign(bytes)``) with ``receiver``, the gateway's
    hotkey. A signed client signs with ``scheme`` (``"btauth"``: btauth/1, or
    ``"epistula"``: Epistula v2); with ``session=True`` (the default) it signs once at
    ``POST /v1/auth/session`` (always btauth/1) and uses the token until shortly before it
    expires. Without credentials only the public routes (``winner``, ``stats``) work.

    Idempotent calls are retried up to ``max_retries`` times on 429 and 503, waiting what
    ``Retry-After`` says (never longer than ``max_retry_wait`` seconds: a longer wait raises at
    once). ``reason``, ``chat_completions`` and ``link_coldkey`` are retried only when asked
    (``retry_non_idempotent=True``, or ``max_retries=`` on the call), and a stream never once
    it started. ``transport`` and ``http_client`` pass through to httpx (proxies, tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        keypair: Any = None,
        receiver: str | None = None,
        scheme: Scheme = "btauth",
        session: bool = True,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry_non_idempotent: bool = False,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._core = Core(
            base_url,
            token=token,
            keypair=keypair,
            receiver=receiver,
            scheme=scheme,
            session=session,
            max_retries=max_retries,
            retry_non_idempotent=retry_non_idempotent,
            max_retry_wait=max_retry_wait,
            headers=headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self._session_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (only one this client created)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def session(self) -> Session | None:
        """The session token in use, if any (automatic sessions)."""
        return self._core.session

    # --- the transport loop ---------------------------------------------------------------

    def _session_token(self, call: Call) -> str | None:
        if not self._core.wants_session(call):
            return None
        token = self._core.current_session()
        if token is not None:
            return token
        with self._session_lock:
            token = self._core.current_session()
            if token is None:
                token = self.create_session().token
        return token

    def _send(self, call: Call) -> httpx.Response:
        """The answer to ``call`` (2xx; opened but unread for a stream), or raises."""
        core = self._core
        retries = core.retries_for(call)
        attempt = 0
        renewed = False
        while True:
            token = self._session_token(call)
            request = self._http.build_request(
                call.method,
                core.url(call),
                content=call.body or None,
                headers=core.headers(call, token),
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as e:
                if isinstance(e, httpx.ConnectError) and attempt < retries:
                    # Nothing reached the gateway: safe to try again.
                    time.sleep(core.retry_delay_connect(attempt))
                    attempt += 1
                    continue
                raise TransportError(f"{call.method} {call.path}: {e}") from e
            if response.is_success:
                if not call.stream:
                    response.read()
                    response.close()
                return response
            try:
                body = response.read()
            except httpx.TransportError as e:
                raise TransportError(f"{call.method} {call.path}: {e}") from e
            finally:
                response.close()
            error = core.error(response, body)
            if error.status == 401 and token and error.code in SESSION_CODES and not renewed:
                # The session token went bad early (revoked, a new gateway secret): sign anew.
                core.drop_session(token)
                renewed = True
                continue
            delay = core.retry_delay(attempt, error) if attempt < retries else None
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def _json(self, call: Call) -> tuple[httpx.Response, Any]:
        response = self._send(call)
        return response, self._core.json(response)

    # --- the API --------------------------------------------------------------------------

    def reason(
        self,
        input: str | list[Mapping[str, str]],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        include_reasoning: bool | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ReasonResult:
        """``POST /v1/reason``, whole: the answer, reasoning, usage, cost and rate limits.

        ``headers`` are sent as given; when they carry a credential (for example headers from
        ``bittensor.http_auth.sign`` over :func:`reason_body`'s bytes), the client adds none.
        """
        if fields.pop("stream", False):
            raise ValueError("use reason_stream() for a streamed answer")
        body = reason_body(
            input,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            include_reasoning=include_reasoning,
            metadata=dict(metadata) if metadata is not None else None,
            **fields,
        )
        call = Call(
            "POST",
            "/v1/reason",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
        )
        response, value = self._json(call)
        return ReasonResult.from_json(
            Reader(value, "reason result"),
            response.headers.get("x-request-id"),
            RateLimit.from_headers(response.headers),
        )

    def reason_stream(
        self,
        input: str | list[Mapping[str, str]],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        include_reasoning: bool | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ReasonStream:
        """``POST /v1/reason`` with ``"stream": true``: a :class:`ReasonStream` of events."""
        fields.pop("stream", None)
        body = reason_body(
            input,
            stream=True,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            include_reasoning=include_reasoning,
            metadata=dict(metadata) if metadata is not None else None,
            **fields,
        )
        call = Call(
            "POST",
            "/v1/reason",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
            stream=True,
        )
        return ReasonStream(lambda: self._send(call))

    def responses(
        self,
        input: str | list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        reasoning: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> Response:
        """``POST /v1/responses``, whole: the typed ``response`` object.

        ``input`` is a prompt or message items (``{"role", "content"}``); ``reasoning`` is
        ``{"effort": …, "summary": …}``. Other ``fields`` are sent as given; stateful ones
        (``previous_response_id``, ``store=True``, ``tools``) are refused by the gateway with
        ``unsupported_parameter``.
        """
        if fields.pop("stream", False):
            raise ValueError("use responses_stream() for a streamed answer")
        body = responses_body(
            input,
            model=model,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            top_p=top_p,
            reasoning=dict(reasoning) if reasoning is not None else None,
            metadata=dict(metadata) if metadata is not None else None,
            **fields,
        )
        call = Call(
            "POST",
            "/v1/responses",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
        )
        response, value = self._json(call)
        return Response.from_json(
            Reader(value, "response"),
            response.headers.get("x-request-id"),
            RateLimit.from_headers(response.headers),
        )

    def responses_stream(
        self,
        input: str | list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        reasoning: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ResponseStream:
        """``POST /v1/responses`` with ``"stream": true``: a :class:`ResponseStream`."""
        fields.pop("stream", None)
        body = responses_body(
            input,
            model=model,
            stream=True,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            top_p=top_p,
            reasoning=dict(reasoning) if reasoning is not None else None,
            metadata=dict(metadata) if metadata is not None else None,
            **fields,
        )
        call = Call(
            "POST",
            "/v1/responses",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
            stream=True,
        )
        return ResponseStream(lambda: self._send(call))

    def chat_completions(
        self,
        messages: list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ChatCompletion:
        """``POST /v1/chat/completions`` pass-through: the provider's ``chat.completion``."""
        if fields.pop("stream", False):
            raise ValueError("use chat_completions_stream() for a streamed answer")
        body = chat_body(messages, model=model, **fields)
        call = Call(
            "POST",
            "/v1/chat/completions",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
        )
        response, value = self._json(call)
        return _chat_completion(response, value)

    def chat_completions_stream(
        self,
        messages: list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ChatStream:
        """Streamed chat completions: a :class:`ChatStream` of the provider's chunks."""
        fields.pop("stream", None)
        body = chat_body(messages, model=model, stream=True, **fields)
        call = Call(
            "POST",
            "/v1/chat/completions",
            body,
            idempotent=False,
            headers=headers or {},
            max_retries=max_retries,
            stream=True,
        )
        return ChatStream(lambda: self._send(call))

    def account(self, *, headers: Mapping[str, str] | None = None) -> Account:
        """``GET /v1/account``: plan, limits, what is left, balance, holds, coldkeys."""
        response, value = self._json(Call("GET", "/v1/account", headers=headers or {}))
        return Account.from_json(Reader(value, "account"), response.headers.get("x-request-id"))

    def models(self, *, headers: Mapping[str, str] | None = None) -> Models:
        """``GET /v1/models``: ``affine-winner`` and the winner's id, with the caller's price."""
        response, value = self._json(Call("GET", "/v1/models", headers=headers or {}))
        return Models.from_json(Reader(value, "models"), response.headers.get("x-request-id"))

    def winner(self) -> Winner:
        """``GET /v1/winner`` (public): the serving model, since when, where, what waits."""
        response, value = self._json(Call("GET", "/v1/winner", auth="none"))
        return Winner.from_json(Reader(value, "winner"), response.headers.get("x-request-id"))

    def usage(
        self,
        from_: DateLike = None,
        to: DateLike = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> UsageReport:
        """``GET /v1/usage``: the caller's usage per UTC day (both ends included) and total."""
        path = "/v1/usage" + query(from_=from_, to=to)
        response, value = self._json(Call("GET", path, headers=headers or {}))
        return UsageReport.from_json(Reader(value, "usage"), response.headers.get("x-request-id"))

    def stats(self, from_: DateLike = None, to: DateLike = None) -> Stats:
        """``GET /v1/stats`` (public): requests, tokens and unique callers per day."""
        path = "/v1/stats" + query(from_=from_, to=to)
        response, value = self._json(Call("GET", path, auth="none"))
        return Stats.from_json(Reader(value, "stats"), response.headers.get("x-request-id"))

    def create_session(self) -> Session:
        """``POST /v1/auth/session``: trade one btauth/1-signed request for a bearer token.

        Signed clients do this by themselves (``session=True``); the token is kept and used
        until shortly before it expires.
        """
        if self._core.keypair is None:
            raise ValueError("a session needs a keypair to sign with")
        _, value = self._json(self._core.session_call())
        session = Session.from_json(Reader(value, "session"))
        self._core.store_session(session)
        return session

    def link_coldkey(
        self,
        coldkey: Any,
        *,
        nonce: str | None = None,
        account: str | None = None,
        max_retries: int | None = None,
    ) -> ColdkeyLink:
        """``POST /v1/account/coldkeys``: link ``coldkey`` (a keypair) to the caller's account.

        The coldkey signs ``affine-gateway:link-coldkey:<account>:<gateway hotkey>:<nonce>``;
        ``account`` defaults to the caller's account id (read with :meth:`account`), the
        gateway hotkey is ``receiver``, and ``nonce`` a fresh random one.
        """
        if not self._core.receiver:
            raise ValueError("linking a coldkey needs receiver: the gateway's hotkey")
        key = resolve_keypair(coldkey)
        account_id = account if account is not None else self.account().id
        nonce = nonce or secrets.token_hex(8)
        message = coldkey_link_message(
            account=account_id, gateway_hotkey=self._core.receiver, nonce=nonce
        )
        body = _json.dumps(
            {
                "coldkey": key.ss58_address,
                "nonce": nonce,
                "signature": "0x" + bytes(key.sign(message)).hex(),
            }
        )
        call = Call("POST", "/v1/account/coldkeys", body, idempotent=False, max_retries=max_retries)
        response, value = self._json(call)
        return ColdkeyLink.from_json(
            Reader(value, "coldkey link"), created=response.status_code == 201
        )
