"""The asynchronous client: :class:`AsyncClient`, the same API as :class:`Client`, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
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
from .client import DateLike, _chat_chunk, _chat_completion
from .errors import ProtocolError, TransportError
from .events import ReasonEvent, parse_event
from .keys import resolve_keypair
from .models import (
    Account,
    ChatCompletion,
    ChatCompletionChunk,
    ColdkeyLink,
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

E = TypeVar("E")
S = TypeVar("S", bound="_AsyncEventStream[Any]")
AsyncEventReader = Callable[[httpx.Response, str | None, RateLimit | None], AsyncGenerator[E, None]]


class _AsyncEventStream(Generic[E]):
    """A streamed answer of typed events, opened on first use and closed with its connection."""

    def __init__(
        self, opener: Callable[[], Awaitable[httpx.Response]], read: AsyncEventReader[E]
    ) -> None:
        self._opener = opener
        self._read = read
        self._response: httpx.Response | None = None
        self._events: AsyncGenerator[E, None] | None = None
        self._closed = False
        self.request_id: str | None = None
        self.rate_limit: RateLimit | None = None
        self.model: str | None = None

    async def _open(self) -> AsyncIterator[E]:
        if self._events is None:
            if self._closed:
                raise ValueError("the stream is closed")
            response = await self._opener()
            self._response = response
            self.request_id = response.headers.get("x-request-id")
            self.rate_limit = RateLimit.from_headers(response.headers)
            self.model = response.headers.get("x-affine-model")
            self._events = self._read(response, self.request_id, self.rate_limit)
        return self._events

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        events = await self._open()
        try:
            return await events.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise

    async def __aenter__(self: S) -> S:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        self._closed = True
        await _close_events(self._events)
        if self._response is not None:
            await self._response.aclose()

    def __del__(self) -> None:
        # Dropped unfinished (a `break` without `async with`): close the socket now, since
        # nothing can be awaited here; the gateway then sees the client gone.
        response = self._response
        if response is not None and not response.is_closed:
            _close_now(response)


class AsyncReasonStream(_AsyncEventStream[ReasonEvent]):
    """A streamed ``/v1/reason`` answer: ``async for`` it for typed events.

    The request is sent when iteration starts (or on ``async with``); an HTTP error is raised
    then as :class:`ApiError`. ``aclose()``, leaving the ``async with`` block, or breaking out
    of the loop closes the connection (the gateway settles the request as ``client_closed``).
    """

    def __init__(self, opener: Callable[[], Awaitable[httpx.Response]]) -> None:
        super().__init__(opener, _reason_events)


class AsyncResponseStream(_AsyncEventStream[ResponseEvent]):
    """A streamed ``/v1/responses`` answer: ``async for`` it for typed ``response.*`` events.

    It ends after ``response.completed``, ``response.incomplete`` or ``response.failed``;
    opening and closing are those of :class:`AsyncReasonStream`.
    """

    def __init__(self, opener: Callable[[], Awaitable[httpx.Response]]) -> None:
        super().__init__(opener, _response_events)


async def _reason_events(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> AsyncGenerator[ReasonEvent, None]:
    # Not a method, so a dropped stream is no reference cycle (see client._reason_events).
    try:
        async for sse in EventSource(response).aiter_sse():
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
        await response.aclose()


async def _response_events(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> AsyncGenerator[ResponseEvent, None]:
    try:
        async for sse in EventSource(response).aiter_sse():
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
        await response.aclose()


async def _chat_chunks(
    response: httpx.Response, request_id: str | None, rate_limit: RateLimit | None
) -> AsyncGenerator[ChatCompletionChunk, None]:
    try:
        async for sse in EventSource(response).aiter_sse():
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
        await response.aclose()


async def _close_events(events: AsyncGenerator[Any, None] | None) -> None:
    if events is not None:
        # Running in another task (aclose() from elsewhere): closing the response suffices.
        with contextlib.suppress(RuntimeError):
            await events.aclose()


def _close_now(response: httpx.Response) -> None:
    """Close an async response's connection without awaiting (from ``__del__``)."""
    stream = response.stream
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        task = loop.create_task(closer())
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)


_PENDING: set[asyncio.Task[Any]] = set()


class AsyncChatStream:
    """A streamed chat completion: ``async for`` it for the provider's chunks."""

    def __init__(self, opener: Callable[[], Awaitable[httpx.Response]]) -> None:
        self._opener = opener
        self._response: httpx.Response | None = None
        self._chunks: AsyncGenerator[ChatCompletionChunk, None] | None = None
        self.request_id: str | None = None
        self.rate_limit: RateLimit | None = None
        self.model: str | None = None

    async def _open(self) -> AsyncIterator[ChatCompletionChunk]:
        if self._chunks is None:
            response = await self._opener()
            self._response = response
            self.request_id = response.headers.get("x-request-id")
            self.rate_limit = RateLimit.from_headers(response.headers)
            self.model = response.headers.get("x-affine-model")
            self._chunks = _chat_chunks(response, self.request_id, self.rate_limit)
        return self._chunks

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        chunks = await self._open()
        try:
            return await chunks.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def __aenter__(self) -> AsyncChatStream:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        await _close_events(self._chunks)
        if self._response is not None:
            await self._response.aclose()

    def __del__(self) -> None:
        response = self._response
        if response is not None and not response.is_closed:
            _close_now(response)


class AsyncClient:
    """The asynchronous client; the same arguments and methods as :class:`Client`, awaited.

    ``reason_stream`` and ``chat_completions_stream`` are not awaited: they return async
    iterators (``async for event in client.reason_stream(...)``).
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
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
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
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._session_lock: asyncio.Lock | None = None

    async def aclose(self) -> None:
        """Close the connection pool (only one this client created)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def session(self) -> Session | None:
        """The session token in use, if any (automatic sessions)."""
        return self._core.session

    async def _session_token(self, call: Call) -> str | None:
        if not self._core.wants_session(call):
            return None
        token = self._core.current_session()
        if token is not None:
            return token
        if self._session_lock is None:
            # Created lazily: a lock belongs to the event loop that first needs it.
            self._session_lock = asyncio.Lock()
        async with self._session_lock:
            token = self._core.current_session()
            if token is None:
                token = (await self.create_session()).token
        return token

    async def _send(self, call: Call) -> httpx.Response:
        core = self._core
        retries = core.retries_for(call)
        attempt = 0
        renewed = False
        while True:
            token = await self._session_token(call)
            request = self._http.build_request(
                call.method,
                core.url(call),
                content=call.body or None,
                headers=core.headers(call, token),
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as e:
                if isinstance(e, httpx.ConnectError) and attempt < retries:
                    await asyncio.sleep(core.retry_delay_connect(attempt))
                    attempt += 1
                    continue
                raise TransportError(f"{call.method} {call.path}: {e}") from e
            if response.is_success:
                if not call.stream:
                    await response.aread()
                    await response.aclose()
                return response
            try:
                body = await response.aread()
            except httpx.TransportError as e:
                raise TransportError(f"{call.method} {call.path}: {e}") from e
            finally:
                await response.aclose()
            error = core.error(response, body)
            if error.status == 401 and token and error.code in SESSION_CODES and not renewed:
                core.drop_session(token)
                renewed = True
                continue
            delay = core.retry_delay(attempt, error) if attempt < retries else None
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def _json(self, call: Call) -> tuple[httpx.Response, Any]:
        response = await self._send(call)
        return response, self._core.json(response)

    async def reason(
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
        """``POST /v1/reason``, whole (see :meth:`Client.reason`)."""
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
        response, value = await self._json(call)
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
    ) -> AsyncReasonStream:
        """``POST /v1/reason`` streamed: an :class:`AsyncReasonStream` of events."""
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
        return AsyncReasonStream(lambda: self._send(call))

    async def responses(
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
        """``POST /v1/responses``, whole: the typed ``response`` object (see ``Client``)."""
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
        response, value = await self._json(call)
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
    ) -> AsyncResponseStream:
        """``POST /v1/responses`` streamed: an :class:`AsyncResponseStream` of events."""
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
        return AsyncResponseStream(lambda: self._send(call))

    async def chat_completions(
        self,
        messages: list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> ChatCompletion:
        """``POST /v1/chat/completions`` pass-through (see :meth:`Client.chat_completions`)."""
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
        response, value = await self._json(call)
        return _chat_completion(response, value)

    def chat_completions_stream(
        self,
        messages: list[Mapping[str, Any]],
        *,
        model: str = "affine-winner",
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **fields: Any,
    ) -> AsyncChatStream:
        """Streamed chat completions: an :class:`AsyncChatStream` of the provider's chunks."""
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
        return AsyncChatStream(lambda: self._send(call))

    async def account(self, *, headers: Mapping[str, str] | None = None) -> Account:
        """``GET /v1/account``."""
        response, value = await self._json(Call("GET", "/v1/account", headers=headers or {}))
        return Account.from_json(Reader(value, "account"), response.headers.get("x-request-id"))

    async def models(self, *, headers: Mapping[str, str] | None = None) -> Models:
        """``GET /v1/models``."""
        response, value = await self._json(Call("GET", "/v1/models", headers=headers or {}))
        return Models.from_json(Reader(value, "models"), response.headers.get("x-request-id"))

    async def winner(self) -> Winner:
        """``GET /v1/winner`` (public)."""
        response, value = await self._json(Call("GET", "/v1/winner", auth="none"))
        return Winner.from_json(Reader(value, "winner"), response.headers.get("x-request-id"))

    async def usage(
        self,
        from_: DateLike = None,
        to: DateLike = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> UsageReport:
        """``GET /v1/usage``."""
        path = "/v1/usage" + query(from_=from_, to=to)
        response, value = await self._json(Call("GET", path, headers=headers or {}))
        return UsageReport.from_json(Reader(value, "usage"), response.headers.get("x-request-id"))

    async def stats(self, from_: DateLike = None, to: DateLike = None) -> Stats:
        """``GET /v1/stats`` (public)."""
        path = "/v1/stats" + query(from_=from_, to=to)
        response, value = await self._json(Call("GET", path, auth="none"))
        return Stats.from_json(Reader(value, "stats"), response.headers.get("x-request-id"))

    async def create_session(self) -> Session:
        """``POST /v1/auth/session`` (see :meth:`Client.create_session`)."""
        if self._core.keypair is None:
            raise ValueError("a session needs a keypair to sign with")
        _, value = await self._json(self._core.session_call())
        session = Session.from_json(Reader(value, "session"))
        self._core.store_session(session)
        return session

    async def link_coldkey(
        self,
        coldkey: Any,
        *,
        nonce: str | None = None,
        account: str | None = None,
        max_retries: int | None = None,
    ) -> ColdkeyLink:
        """``POST /v1/account/coldkeys`` (see :meth:`Client.link_coldkey`)."""
        if not self._core.receiver:
            raise ValueError("linking a coldkey needs receiver: the gateway's hotkey")
        key = resolve_keypair(coldkey)
        account_id = account if account is not None else (await self.account()).id
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
        response, value = await self._json(call)
        return ColdkeyLink.from_json(
            Reader(value, "coldkey link"), created=response.status_code == 201
        )
