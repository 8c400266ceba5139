"""Client behaviour that needs no gateway: retries, sessions, errors, rate-limit headers."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from bittensor_wallet import Keypair

from affine_reason import ApiError, AsyncClient, Client, RateLimit, TransportError, _core
from gateway import GATEWAY_HOTKEY

PROBLEM_429 = {
    "type": "/docs#error-rate_limited",
    "title": "Rate limited",
    "status": 429,
    "detail": "too many requests",
    "code": "rate_limited",
    "request_id": "req-1",
}
ACCOUNT = {
    "id": "acme",
    "kind": "enterprise",
    "netuid": None,
    "plan": "enterprise",
    "billing": "postpaid",
    "credit_limit_rao": 5,
    "balance_rao": -3,
    "disabled": False,
    "limits": {
        "name": "enterprise",
        "requests_per_minute": 1,
        "tokens_per_minute": 2,
        "tokens_per_day": 3,
        "max_concurrent": 4,
        "max_tokens": 5,
        "input_rao_per_mtok": 6,
        "output_rao_per_mtok": 7,
        "pricing": "fixed",
    },
    "remaining": {
        "requests_per_minute": 1,
        "tokens_per_minute": 2,
        "tokens_per_day": 3,
        "in_flight": 0,
    },
    "holds_rao": 0,
    "membership": [],
    "deposits": [],
    "coldkeys": [],
    "future_field": 1,
}


def _problem(status: int, retry_after: str | None = None, **fields: Any) -> httpx.Response:
    headers = {"content-type": "application/problem+json", "x-request-id": "req-1"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {**PROBLEM_429, "status": status, **fields}
    return httpx.Response(status, json=body, headers=headers)


def _json(body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"content-type": "application/json", **headers})


class Script:
    """A fake gateway answering from a list; records when each request arrived."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        return self.answers.pop(0)


def test_idempotent_calls_retry_after_retry_after():
    script = Script(_problem(503, "1", code="store_unavailable"), _json(ACCOUNT))
    with Client("http://gw.test", token="t", transport=httpx.MockTransport(script)) as c:
        account = c.account()
    assert account.id == "acme" and account.balance.tao == Decimal("-0.000000003")
    (first, _), (second, _) = script.requests
    assert second - first >= 1.0


def test_retries_are_bounded_and_long_waits_are_not_waited_for():
    script = Script(*[_problem(429, "0") for _ in range(3)])
    with (
        Client(
            "http://gw.test", token="t", max_retries=2, transport=httpx.MockTransport(script)
        ) as c,
        pytest.raises(ApiError) as raised,
    ):
        c.account()
    assert len(script.requests) == 3  # one try and two retries
    assert raised.value.code == "rate_limited" and raised.value.retry_after == 0
    script = Script(_problem(429, "3600"))
    started = time.monotonic()
    with (
        Client(
            "http://gw.test", token="t", max_retry_wait=30, transport=httpx.MockTransport(script)
        ) as c,
        pytest.raises(ApiError) as raised,
    ):
        c.account()
    assert raised.value.retry_after == 3600 and time.monotonic() - started < 5


def test_other_errors_are_not_retried_and_carry_their_fields():
    script = Script(_problem(402, code="insufficient_balance", detail="needs 5 rao"))
    with Client("http://gw.test", token="t", transport=httpx.MockTransport(script)) as c:
        with pytest.raises(ApiError) as raised:
            c.reason("x", max_retries=5)
    e = raised.value
    assert (e.status, e.code, e.request_id, e.retry_after) == (
        402,
        "insufficient_balance",
        "req-1",
        None,
    )
    assert e.message == "needs 5 rao" and len(script.requests) == 1


def test_openai_shaped_errors_are_api_errors():
    body = {
        "error": {"message": "no such model", "type": "invalid_request_error", "code": "not_found"}
    }
    script = Script(httpx.Response(404, json=body, headers={"x-request-id": "r9"}))
    with Client("http://gw.test", token="t", transport=httpx.MockTransport(script)) as c:
        with pytest.raises(ApiError) as raised:
            c.chat_completions([{"role": "user", "content": "x"}], model="nope")
    assert (raised.value.status, raised.value.code, raised.value.request_id) == (
        404,
        "not_found",
        "r9",
    )


def test_a_stream_is_never_retried_once_it_started():
    sse = (
        b'event: output\ndata: {"delta":"4"}\n\n'
        b'event: error\ndata: {"type":"/docs#error-upstream_timeout","title":"t","status":504,'
        b'"detail":"idle","code":"upstream_timeout","request_id":"r"}\n\n'
    )
    script = Script(httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"}))
    with Client(
        "http://gw.test",
        token="t",
        retry_non_idempotent=True,
        transport=httpx.MockTransport(script),
    ) as c:
        events = list(c.reason_stream("x"))
    assert [e.type for e in events] == ["output", "error"]
    assert events[1].error.code == "upstream_timeout"
    assert len(script.requests) == 1


def test_unknown_events_and_comments_are_skipped():
    sse = (
        b": keep-alive\n\nevent: novelty\ndata: {}\n\n"
        b'event: reasoning\ndata: {"delta":"hm"}\n\n'
        b'event: done\ndata: {"id":"rsn_1","object":"reason.result","created":1,'
        b'"model":{"id":"m","source":"static"},"finish_reason":"stop","usage":'
        b'{"input_tokens":1,"output_tokens":1,"reasoning_tokens":1,"total_tokens":2},'
        b'"cost":{"rao":1,"tao":"0.000000001"},"timing":{"ttft_ms":1,"total_ms":2}}\n\n'
    )
    script = Script(
        httpx.Response(
            200, content=sse, headers={"x-request-id": "r7", "content-type": "text/event-stream"}
        )
    )
    with Client("http://gw.test", token="t", transport=httpx.MockTransport(script)) as c:
        events = list(c.reason_stream("x"))
    assert [e.type for e in events] == ["reasoning", "done"]
    assert events[1].result.request_id == "r7" and events[1].cost.rao == 1


def test_a_stream_cut_before_its_end_raises():
    sse = b'event: output\ndata: {"delta":"4"}\n\n'
    script = Script(httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"}))
    with Client("http://gw.test", token="t", transport=httpx.MockTransport(script)) as c:
        stream = c.reason_stream("x")
        assert next(stream).type == "output"
        with pytest.raises(TransportError):
            next(stream)


def _session_gateway(log: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/session":
            assert "x-bittensor-signature" in request.headers  # btauth/1, whatever the scheme
            log.append("session")
            expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=900)
            return _json({"token": f"tok{len(log)}", "expires_at": expires.isoformat()})
        log.append(request.headers["authorization"])
        return _json(ACCOUNT)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("scheme", ["btauth", "epistula"])
def test_sessions_are_renewed_shortly_before_they_expire(monkeypatch, scheme: str):
    log: list[str] = []
    kp = Keypair.create_from_uri("//Eve")
    with Client(
        "http://gw.test",
        keypair=kp,
        receiver=GATEWAY_HOTKEY,
        scheme=scheme,
        transport=_session_gateway(log),
    ) as c:
        c.account()
        c.account()
        assert log == ["session", "Bearer tok1", "Bearer tok1"]
        real = time.time
        # 850 s into a 900 s token: inside the renewal margin, so it signs a new session.
        monkeypatch.setattr(_core.time, "time", lambda: real() + 850)
        c.account()
    assert log[3:] == ["session", "Bearer tok4"]


async def test_sessions_async_and_a_rejected_token_is_renewed_once():
    log: list[str] = []
    answers = iter([_problem(401, code="token_expired")])

    base = _session_gateway(log)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/account" and len(log) == 1:
            log.append("rejected")
            return next(answers)
        return base.handler(request)  # type: ignore[attr-defined]

    kp = Keypair.create_from_uri("//Eve")
    async with AsyncClient(
        "http://gw.test", keypair=kp, receiver=GATEWAY_HOTKEY, transport=httpx.MockTransport(handle)
    ) as c:
        assert (await c.account()).id == "acme"
    assert log == ["session", "rejected", "session", "Bearer tok3"]


def test_rate_limit_headers_are_parsed():
    rl = RateLimit.from_headers(
        {
            "RateLimit-Policy": '"rpm";q=600;w=60, "tpm";q=2000000;w=60, "subnet-rpm";q=10;w=60',
            "RateLimit": '"rpm";r=599;t=1, "tpm";r=1997952;t=1, "subnet-rpm";r=9;t=6',
        }
    )
    assert rl is not None
    assert (rl["rpm"].quota, rl["rpm"].window, rl["rpm"].remaining, rl["rpm"].reset) == (
        600,
        60,
        599,
        1,
    )
    assert rl["subnet-rpm"].remaining == 9 and set(rl) == {"rpm", "tpm", "subnet-rpm"}
    assert RateLimit.from_headers({}) is None


def test_configuration_mistakes_are_refused_early():
    kp = Keypair.create_from_uri("//Eve")
    with pytest.raises(ValueError, match="receiver"):
        Client("http://gw.test", keypair=kp)
    with pytest.raises(ValueError, match="not both"):
        Client("http://gw.test", keypair=kp, receiver=GATEWAY_HOTKEY, token="t")
    with pytest.raises(ValueError, match="scheme"):
        Client("http://gw.test", keypair=kp, receiver=GATEWAY_HOTKEY, scheme="jwt")
    with pytest.raises(TypeError):
        Client("http://gw.test", keypair=object(), receiver=GATEWAY_HOTKEY)


def test_connection_errors_are_transport_errors():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        Client(
            "http://gw.test", token="t", max_retries=0, transport=httpx.MockTransport(refuse)
        ) as c,
        pytest.raises(TransportError),
    ):
        c.winner()


def test_keypairs_from_uri_seed_mnemonic_and_wallet(tmp_path):
    from bittensor_wallet import Wallet

    from affine_reason import keys

    alice = keys.from_uri("//Alice")
    assert alice.ss58_address == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    assert keys.from_uri("//Alice", crypto="ed25519").ss58_address == (
        "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu"
    )
    mnemonic = Keypair.generate_mnemonic()
    from_mnemonic = keys.from_mnemonic(mnemonic)
    assert from_mnemonic.ss58_address == Keypair.create_from_mnemonic(mnemonic).ss58_address
    seed = bytes(range(32))
    assert keys.from_seed(seed).ss58_address == keys.from_seed("0x" + seed.hex()).ss58_address
    with pytest.raises(ValueError, match="crypto"):
        keys.from_uri("//Alice", crypto="ecdsa")
    wallet = Wallet(name="sdk", hotkey="hot", path=str(tmp_path))
    wallet.set_hotkey(Keypair.create_from_uri("//Ferdie"), encrypt=False, overwrite=True)
    loaded = keys.from_wallet("sdk", "hot", path=str(tmp_path))
    assert loaded.ss58_address == wallet.hotkey.ss58_address
    # A wallet itself is accepted as the keypair: its hotkey signs.
    client = Client("http://gw.test", keypair=wallet, receiver=GATEWAY_HOTKEY)
    assert client._core.keypair is not None
    assert client._core.keypair.ss58_address == wallet.hotkey.ss58_address
    client.close()


async def test_a_chat_stream_failing_mid_answer_raises_a_typed_error():
    sse = (
        b'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"4"}}]}\n\n'
        b'data: {"error":{"message":"idle","type":"server_error","code":"upstream_timeout"}}\n\n'
    )

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=sse, headers={"content-type": "text/event-stream", "x-request-id": "c1"}
        )

    async with AsyncClient("http://gw.test", token="t", transport=httpx.MockTransport(handle)) as c:
        deltas = []
        with pytest.raises(ApiError) as raised:
            async for chunk in c.chat_completions_stream([{"role": "user", "content": "x"}]):
                deltas.append(chunk.delta)
    assert deltas == ["4"]
    e = raised.value
    assert (e.status, e.code, e.request_id, e.type) == (
        504,
        "upstream_timeout",
        "c1",
        "server_error",
    )


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2026-12-03T14:06:00Z", 0),
        ("2026-12-03T14:06:00.5Z", 500000),
        ("2026-12-03T14:06:00.123456789+00:00", 123456),
    ],
)
def test_rfc3339_times_of_any_precision(text: str, micro: int):
    from affine_reason._json import parse_datetime

    when = parse_datetime(text)
    assert when.utcoffset() == dt.timedelta(0) and when.microsecond == micro
