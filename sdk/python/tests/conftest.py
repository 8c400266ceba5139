"""Fixtures: a live gateway on the built-in simulator, its accounts, keys and clients."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bittensor_wallet import Keypair

from gateway import GATEWAY_HOTKEY, REPO, SIM_MODEL, Gateway, Simulator

# A plan whose requests-per-minute bucket refills one request a second: a 429 comes after
# 60 requests and its Retry-After is short enough to wait for. Free, so nothing is a 402.
MAIN_CONFIG = """
allow_unregistered = false

[plans.tight]
requests_per_minute = 60
tokens_per_minute = 100000000
tokens_per_day = 1000000000
max_concurrent = 16
max_tokens = 4096
input_rao_per_mtok = 0
output_rao_per_mtok = 0
"""

CREDIT = 10**15


@dataclass(frozen=True)
class Keys:
    alice: Any  # sr25519 //Alice
    alice_ed: Any  # ed25519 //Alice
    charlie: Any  # sr25519 //Charlie: signs with bittensor.http_auth
    dave: Any  # sr25519 //Dave: automatic sessions


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        alice=Keypair.create_from_uri("//Alice"),
        alice_ed=Keypair.create_from_uri("//Alice", crypto_type=0),
        charlie=Keypair.create_from_uri("//Charlie"),
        dave=Keypair.create_from_uri("//Dave"),
    )


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    root = REPO / "tests" / "vectors"
    return {
        name: json.loads((root / f"{name}.json").read_text())
        for name in ("btauth_v1", "epistula_v2", "coldkey_link")
    }


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway"), "gateway", MAIN_CONFIG, {})
    try:
        # Unregistered hotkeys are refused (allow_unregistered = false): these are registered.
        for kp in (keys.alice, keys.alice_ed, keys.charlie, keys.dave):
            gw.put_account(
                kp.ss58_address, plan="subnet", billing="postpaid", credit_limit_rao=CREDIT
            )
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def bearer_token(gateway: Gateway) -> str:
    return gateway.enterprise("sdk-bearer", billing="postpaid", credit_limit_rao=CREDIT)


@pytest.fixture(scope="session")
def prepaid_token(gateway: Gateway) -> str:
    """A prepaid enterprise account with nothing on it: every priced request is a 402."""
    return gateway.enterprise("sdk-prepaid", billing="prepaid")


_tight = itertools.count()


@pytest.fixture
def tight_token(gateway: Gateway) -> str:
    """A fresh account on the tight plan (its own full bucket)."""
    return gateway.enterprise(
        f"sdk-tight-{next(_tight)}", plan="tight", billing="postpaid", credit_limit_rao=CREDIT
    )


@pytest.fixture(scope="session")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway in front of a simulator that paces its tokens (20 a second).

    The built-in simulator answers a whole stream at once, so a client could never leave in
    the middle; this one takes 20 s to stream its 400 tokens.
    """
    work = tmp_path_factory.mktemp("slow")
    sim = Simulator(work, tokens_per_sec=20)
    try:
        gw = Gateway(
            work,
            "slow-gateway",
            "",
            {
                "GATEWAY_UPSTREAM_URL": sim.url,
                "CHUTES_API_KEY": "sim-key",
                "GATEWAY_WINNER": SIM_MODEL,
            },
        )
    except BaseException:
        sim.stop()
        raise
    try:
        yield gw
    finally:
        gw.stop()
        sim.stop()


class Recorder:
    """What a recording transport saw: one entry per request sent."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []

    def paths(self) -> list[str]:
        return [e["path"] for e in self.exchanges]

    def _record(self, request: httpx.Request, sent: float, response: httpx.Response) -> None:
        self.exchanges.append(
            {
                "path": request.url.path,
                "sent": sent,
                "received": time.monotonic(),
                "status": response.status_code,
                "retry_after": response.headers.get("retry-after"),
                "authorization": request.headers.get("authorization"),
                "signed": "x-bittensor-signature" in request.headers
                or "epistula-request-signature" in request.headers,
            }
        )


class RecordingTransport(httpx.HTTPTransport):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = super().handle_request(request)
        self.recorder._record(request, sent, response)
        return response


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = await super().handle_async_request(request)
        self.recorder._record(request, sent, response)
        return response


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


__all__ = ["GATEWAY_HOTKEY", "Path"]
