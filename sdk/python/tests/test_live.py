"""The issue's "must show" points against a live gateway (built-in simulator), sync and async."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from decimal import Decimal
from typing import Any

import bittensor as bt
import pytest
from bittensor_wallet import Keypair

from affine_reason import (
    Account,
    ApiError,
    AsyncClient,
    Client,
    Cost,
    DoneEvent,
    Models,
    ReasonResult,
    Stats,
    UsageReport,
    Winner,
    reason_body,
)
from conftest import AsyncRecordingTransport, Keys, Recorder, RecordingTransport
from gateway import GATEWAY_HOTKEY, Gateway, wait_until

CREDENTIALS = ["bearer", "btauth", "epistula", "session", "session-epistula", "ed25519"]


def credentials(kind: str, keys: Keys, bearer_token: str) -> dict[str, Any]:
    """Client keyword arguments for one way of authenticating."""
    if kind == "bearer":
        return {"token": bearer_token}
    signed = {"receiver": GATEWAY_HOTKEY}
    return {
        "btauth": {**signed, "keypair": keys.alice, "session": False},
        "ed25519": {**signed, "keypair": keys.alice_ed, "session": False},
        "epistula": {**signed, "keypair": keys.alice, "scheme": "epistula", "session": False},
        "session": {**signed, "keypair": keys.dave},
        "session-epistula": {**signed, "keypair": keys.dave, "scheme": "epistula"},
    }[kind]


def check_result(result: ReasonResult) -> None:
    assert result.output
    assert result.reasoning
    assert result.id.startswith("rsn_")
    assert isinstance(result.cost.rao, int) and result.cost.rao > 0
    assert isinstance(result.cost.tao, Decimal)
    assert result.cost.tao * 10**9 == result.cost.rao
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert result.model.id and result.model.source
    assert result.request_id
    assert result.rate_limit is not None
    rpm = result.rate_limit["rpm"]
    assert rpm.quota == 600 or rpm.quota == 1200  # subnet or enterprise plan
    assert rpm.window == 60
    assert rpm.remaining is not None and 0 <= rpm.remaining < rpm.quota


def check_stream(events: list[Any]) -> DoneEvent:
    types = [e.type for e in events]
    assert types[-1] == "done", types
    assert "reasoning" in types and "output" in types
    assert types.count("done") == 1
    # Reasoning comes before the answer, and only the done event carries the cost.
    assert types.index("reasoning") < types.index("output")
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert not hasattr(done.result, "output")
    assert done.result.cost.rao > 0 and done.result.cost.tao * 10**9 == done.result.cost.rao
    assert done.result.usage.output_tokens > 0
    text = "".join(e.delta for e in events if e.type == "output")
    assert text.strip()
    return done


# --- signed (both schemes), bearer and session; whole and streamed ---------------------------


@pytest.mark.parametrize("kind", CREDENTIALS)
def test_reason_whole_and_streamed(gateway: Gateway, keys: Keys, bearer_token: str, kind: str):
    with Client(gateway.url, **credentials(kind, keys, bearer_token)) as client:
        check_result(client.reason("What is 2+2?", max_tokens=64, metadata={"case": kind}))
        with client.reason_stream("What is 2+2?", max_tokens=64) as stream:
            events = list(stream)
        done = check_stream(events)
        assert stream.request_id and done.result.request_id == stream.request_id
        assert stream.rate_limit is not None and "rpm" in stream.rate_limit
        if kind.startswith("session"):
            assert client.session is not None


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_reason_whole_and_streamed_async(
    gateway: Gateway, keys: Keys, bearer_token: str, kind: str
):
    async with AsyncClient(gateway.url, **credentials(kind, keys, bearer_token)) as client:
        check_result(await client.reason("What is 2+2?", max_tokens=64))
        events = [e async for e in client.reason_stream("What is 2+2?", max_tokens=64)]
        check_stream(events)
        if kind.startswith("session"):
            assert client.session is not None


@pytest.mark.parametrize("scheme", ["btauth", "epistula"])
def test_session_signs_once_then_uses_the_token(
    gateway: Gateway, keys: Keys, recorder: Recorder, scheme: str
):
    transport = RecordingTransport(recorder)
    with Client(
        gateway.url,
        keypair=keys.dave,
        receiver=GATEWAY_HOTKEY,
        scheme=scheme,
        transport=transport,
    ) as client:
        for _ in range(3):
            client.reason("hi", max_tokens=16)
        client.account()
        session = client.session
    assert session is not None
    assert recorder.paths().count("/v1/auth/session") == 1
    # The exchange is signed (always btauth/1); every other call carries the session token.
    exchange = recorder.exchanges[0]
    assert exchange["path"] == "/v1/auth/session" and exchange["signed"]
    assert all(
        e["authorization"] == f"Bearer {session.token}" and not e["signed"]
        for e in recorder.exchanges[1:]
    )
    assert session.expires_at > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    # The token is a bearer token for the hotkey's own account.
    with Client(gateway.url, token=session.token) as by_token:
        assert by_token.account().id == keys.dave.ss58_address


async def test_session_signs_once_then_uses_the_token_async(
    gateway: Gateway, keys: Keys, recorder: Recorder
):
    async with AsyncClient(
        gateway.url,
        keypair=keys.dave,
        receiver=GATEWAY_HOTKEY,
        transport=AsyncRecordingTransport(recorder),
    ) as client:
        for _ in range(3):
            await client.reason("hi", max_tokens=16)
        assert (await client.account()).id == keys.dave.ss58_address
    assert recorder.paths().count("/v1/auth/session") == 1
    assert sum(1 for e in recorder.exchanges if e["signed"]) == 1


# --- interoperability with bittensor.http_auth ----------------------------------------------


def test_bittensor_signed_headers_pass_through_unchanged(gateway: Gateway, keys: Keys):
    wallet = keys.charlie  # a raw Keypair is a bittensor Signer
    with Client(gateway.url) as client:
        body = reason_body("What is 2+2?", max_tokens=32)
        headers = bt.http_auth.sign(
            wallet, method="POST", path="/v1/reason", body=body, receiver_ss58=GATEWAY_HOTKEY
        )
        result = client.reason("What is 2+2?", max_tokens=32, headers=headers)
        check_result(result)
        body = reason_body("What is 2+2?", stream=True, max_tokens=32)
        headers = bt.http_auth.sign(
            wallet, method="POST", path="/v1/reason", body=body, receiver_ss58=GATEWAY_HOTKEY
        )
        check_stream(list(client.reason_stream("What is 2+2?", max_tokens=32, headers=headers)))
        headers = bt.http_auth.sign(
            wallet, method="GET", path="/v1/account", receiver_ss58=GATEWAY_HOTKEY
        )
        assert client.account(headers=headers).id == keys.charlie.ss58_address


async def test_bittensor_signed_headers_pass_through_unchanged_async(gateway: Gateway, keys: Keys):
    wallet = keys.charlie  # a raw Keypair is a bittensor Signer
    async with AsyncClient(gateway.url) as client:
        today = dt.date.today().isoformat()
        headers = bt.http_auth.sign(
            wallet,
            method="GET",
            path=f"/v1/usage?from={today}&to={today}",
            receiver_ss58=GATEWAY_HOTKEY,
        )
        report = await client.usage(today, today, headers=headers)
        assert report.account == keys.charlie.ss58_address


# --- a cancelled stream is settled as client_closed -----------------------------------------


def _settled(gateway: Gateway, marker: str) -> dict[str, Any] | None:
    return next(
        (e for e in gateway.usage_events() if (e.get("metadata") or {}).get("case") == marker),
        None,
    )


def test_cancelled_stream_is_settled_client_closed(slow_gateway: Gateway):
    token = slow_gateway.enterprise("sdk-cancel", billing="postpaid", credit_limit_rao=10**15)
    marker = f"cancel-{secrets.token_hex(4)}"
    seen = []
    with Client(slow_gateway.url, token=token) as client:
        for event in client.reason_stream("Tell me a long story", metadata={"case": marker}):
            seen.append(event.type)
            if len(seen) == 3:
                break  # leaving the loop closes the connection
    assert seen and "done" not in seen
    event = wait_until("the settlement", lambda: _settled(slow_gateway, marker), timeout=30)
    assert event["status"] == "client_closed"
    assert event["estimated"] is True


@pytest.mark.parametrize("style", ["async with", "break"])
async def test_cancelled_stream_is_settled_client_closed_async(slow_gateway: Gateway, style: str):
    token = slow_gateway.enterprise(
        f"sdk-cancel-{style.replace(' ', '-')}", billing="postpaid", credit_limit_rao=10**15
    )
    marker = f"cancel-{secrets.token_hex(4)}"
    seen = []
    async with AsyncClient(slow_gateway.url, token=token) as client:
        if style == "async with":
            async with client.reason_stream("Tell me a story", metadata={"case": marker}) as s:
                async for event in s:
                    seen.append(event.type)
                    if len(seen) == 3:
                        break
        else:
            # No `async with`: dropping the stream closes the connection by itself.
            async for event in client.reason_stream("Tell me a story", metadata={"case": marker}):
                seen.append(event.type)
                if len(seen) == 3:
                    break
        assert seen and "done" not in seen
        deadline = time.monotonic() + 30
        settled = None
        while settled is None and time.monotonic() < deadline:
            settled = _settled(slow_gateway, marker)
            if settled is None:
                await asyncio.sleep(0.1)
    assert settled is not None, "the cancelled stream was never settled"
    assert settled["status"] == "client_closed"


# --- typed errors: 429 and 402 --------------------------------------------------------------


def _exhaust(client: Client) -> ApiError:
    """Spends the tight plan's requests-per-minute bucket; answers the first 429."""
    for _ in range(200):
        try:
            client.reason("x", max_tokens=1, max_retries=0)
        except ApiError as e:
            return e
    raise AssertionError("no 429 within 200 requests")


def test_429_is_a_typed_error_with_retry_after(gateway: Gateway, tight_token: str):
    with Client(gateway.url, token=tight_token) as client:
        error = _exhaust(client)
    assert error.status == 429
    assert error.code == "rate_limited"
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.request_id
    assert error.rate_limit is not None and error.rate_limit["rpm"].remaining == 0
    assert error.rate_limit["rpm"].quota == 60


async def test_429_is_a_typed_error_with_retry_after_async(gateway: Gateway, tight_token: str):
    async with AsyncClient(gateway.url, token=tight_token) as client:
        error = None
        for _ in range(200):
            try:
                await client.reason("x", max_tokens=1)  # not retried: not idempotent
            except ApiError as e:
                error = e
                break
    assert error is not None
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.retry_after is not None and error.retry_after >= 1


def test_402_is_a_typed_error(gateway: Gateway, prepaid_token: str):
    with Client(gateway.url, token=prepaid_token) as client:
        with pytest.raises(ApiError) as raised:
            client.reason("What is 2+2?")
        with pytest.raises(ApiError) as streamed:
            list(client.reason_stream("What is 2+2?"))
        account = client.account()
    for e in (raised.value, streamed.value):
        assert e.status == 402
        assert e.code == "insufficient_balance"
        assert e.retry_after is None  # paying, not waiting, cures it
        assert e.request_id and "rao" in e.message
    assert account.billing == "prepaid" and account.balance_rao == 0


async def test_402_is_a_typed_error_async(gateway: Gateway, prepaid_token: str):
    async with AsyncClient(gateway.url, token=prepaid_token) as client:
        with pytest.raises(ApiError) as raised:
            await client.reason("What is 2+2?", max_retries=3)
    assert (raised.value.status, raised.value.code) == (402, "insufficient_balance")


# --- retries honour Retry-After -------------------------------------------------------------


def _check_retries_waited(recorder: Recorder) -> None:
    reasons = [e for e in recorder.exchanges if e["path"] == "/v1/reason"]
    assert reasons[-1]["status"] == 200
    refused = [i for i, e in enumerate(reasons[:-1]) if e["status"] == 429]
    assert refused, "the retried request was never refused"
    for i in refused:
        wait = float(reasons[i]["retry_after"])
        assert wait >= 1
        # The next attempt left no earlier than the header said.
        assert reasons[i + 1]["sent"] - reasons[i]["received"] >= wait


def test_retries_honour_retry_after(gateway: Gateway, tight_token: str, recorder: Recorder):
    with Client(gateway.url, token=tight_token) as client:
        _exhaust(client)
    with Client(gateway.url, token=tight_token, transport=RecordingTransport(recorder)) as client:
        result = client.reason("x", max_tokens=1, max_retries=3)
    assert result.output is not None
    _check_retries_waited(recorder)


async def test_retries_honour_retry_after_async(
    gateway: Gateway, tight_token: str, recorder: Recorder
):
    with Client(gateway.url, token=tight_token) as client:
        _exhaust(client)
    async with AsyncClient(
        gateway.url,
        token=tight_token,
        retry_non_idempotent=True,
        transport=AsyncRecordingTransport(recorder),
    ) as client:
        await client.reason("x", max_tokens=1)
    _check_retries_waited(recorder)


def test_non_idempotent_calls_are_not_retried_unless_asked(
    gateway: Gateway, tight_token: str, recorder: Recorder
):
    with Client(gateway.url, token=tight_token) as client:
        _exhaust(client)
    with (
        Client(gateway.url, token=tight_token, transport=RecordingTransport(recorder)) as client,
        pytest.raises(ApiError) as raised,
    ):
        client.reason("x", max_tokens=1)
    assert raised.value.code == "rate_limited"
    assert recorder.paths() == ["/v1/reason"]


# --- every other endpoint, typed ------------------------------------------------------------


def _check_endpoints(
    account: Account,
    models: Models,
    winner: Winner,
    usage: UsageReport,
    stats: Stats,
    account_id: str,
) -> None:
    assert account.id == account_id
    assert account.limits.requests_per_minute > 0
    assert account.remaining.requests_per_minute <= account.limits.requests_per_minute
    assert isinstance(account.balance, Cost)
    ids = [m.id for m in models]
    assert "affine-winner" in ids and winner.model.id in ids
    price = models.get("affine-winner")
    assert price is not None and price.price is not None
    assert isinstance(price.price.input.tao, Decimal)
    assert price.price.input.tao * 10**9 == price.price.input.rao
    assert winner.upstream and winner.since.tzinfo is not None
    today = dt.datetime.now(dt.timezone.utc).date()
    assert usage.account == account_id and usage.to == today
    assert usage.total.requests == sum(d.requests for d in usage.days)
    assert stats.to == today and all(d.unique_callers >= 0 for d in stats.days)


def test_account_models_winner_usage_stats(gateway: Gateway, keys: Keys):
    with Client(gateway.url, keypair=keys.alice, receiver=GATEWAY_HOTKEY) as client:
        client.reason("hello", max_tokens=8)
        today = dt.datetime.now(dt.timezone.utc).date()
        since = today - dt.timedelta(days=2)
        # Settlement runs after the answer, on the gateway's own time.
        usage = wait_until(
            "the request in the usage report",
            lambda: (u := client.usage(since, today)).total.rao > 0 and u,
            timeout=10,
        )
        _check_endpoints(
            client.account(),
            client.models(),
            client.winner(),
            usage,
            client.stats(since, today),
            keys.alice.ss58_address,
        )
        assert usage.from_ == since and usage.total.requests >= 1


async def test_account_models_winner_usage_stats_async(gateway: Gateway, bearer_token: str):
    async with AsyncClient(gateway.url, token=bearer_token) as client:
        await client.reason("hello", max_tokens=8)
        _check_endpoints(
            await client.account(),
            await client.models(),
            await client.winner(),
            await client.usage(),
            await client.stats(),
            "sdk-bearer",
        )


def test_public_routes_need_no_credentials(gateway: Gateway):
    with Client(gateway.url) as client:
        assert client.winner().model.id
        assert isinstance(client.stats(), Stats)
        with pytest.raises(ApiError) as raised:
            client.account()
    assert (raised.value.status, raised.value.code) == (401, "auth_missing")


# --- chat completions pass-through ----------------------------------------------------------


def test_chat_completions_whole_and_streamed(gateway: Gateway, bearer_token: str):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    with Client(gateway.url, token=bearer_token) as client:
        whole = client.chat_completions(messages, max_tokens=32)
        assert whole.data["object"] == "chat.completion"
        assert whole.content
        assert whole.cost is not None and whole.cost.rao > 0
        assert whole.model and whole.rate_limit is not None
        chunks = list(client.chat_completions_stream(messages, max_tokens=32))
        assert "".join(c.delta for c in chunks).strip()
        assert any(c.usage for c in chunks)  # the final usage chunk
        with pytest.raises(ApiError) as raised:
            client.chat_completions(messages, model="no/such-model")
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    assert raised.value.request_id


async def test_chat_completions_whole_and_streamed_async(gateway: Gateway, keys: Keys):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    async with AsyncClient(gateway.url, keypair=keys.dave, receiver=GATEWAY_HOTKEY) as client:
        whole = await client.chat_completions(messages, max_tokens=32)
        assert whole.content
        chunks = [c async for c in client.chat_completions_stream(messages, max_tokens=32)]
        assert any(c.usage for c in chunks)


# --- coldkey linking ------------------------------------------------------------------------


def test_link_coldkey(gateway: Gateway, keys: Keys):
    coldkey = Keypair.create_from_uri("//SdkSyncColdkey")
    with Client(gateway.url, keypair=keys.alice, receiver=GATEWAY_HOTKEY) as client:
        link = client.link_coldkey(coldkey)
        again = client.link_coldkey(coldkey)
        account = client.account()
    assert (link.coldkey, link.account) == (coldkey.ss58_address, keys.alice.ss58_address)
    assert link.created and not again.created and again.linked_at == link.linked_at
    assert coldkey.ss58_address in {c.coldkey for c in account.coldkeys}


async def test_link_coldkey_async(gateway: Gateway, bearer_token: str):
    coldkey = Keypair.create_from_uri("//SdkAsyncColdkey")
    async with AsyncClient(gateway.url, token=bearer_token, receiver=GATEWAY_HOTKEY) as client:
        link = await client.link_coldkey(coldkey)
        with pytest.raises(ApiError) as reused:
            await client.link_coldkey(coldkey, nonce="used-once", account="someone-else")
    assert link.account == "sdk-bearer" and link.created
    assert (reused.value.status, reused.value.code) == (400, "invalid_request")
