"""Signatures byte for byte as bittensor.http_auth makes them (no gateway needed)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import bittensor as bt
import httpx
import pytest
from bittensor_wallet import Keypair

from affine_reason import AsyncClient, Client, sign_btauth, sign_epistula
from affine_reason.signing import btauth_payload, coldkey_link_message, epistula_message
from conftest import Keys
from gateway import GATEWAY_HOTKEY

RESULT = {
    "id": "rsn_1",
    "object": "reason.result",
    "created": 1,
    "model": {"id": "org/m", "source": "static"},
    "output": "4",
    "reasoning": None,
    "finish_reason": "stop",
    "usage": {"input_tokens": 1, "output_tokens": 1, "reasoning_tokens": 0, "total_tokens": 2},
    "cost": {"rao": 3, "tao": "0.000000003"},
    "timing": {"ttft_ms": 0, "total_ms": 0},
}


def _ok_cases(vectors: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in vectors["btauth_v1"]["cases"] if c["expect"] == "ok"]


def test_btauth_payload_matches_bittensor_on_every_vector(vectors):
    for case in vectors["btauth_v1"]["cases"]:
        h = {k.lower(): v for k, v in case["headers"].items()}
        if not h.get("x-bittensor-nonce", "").isdigit() or "x-bittensor-hotkey" not in h:
            continue
        args = {
            "method": case["method"],
            "path": case["path"],
            "body": base64.b64decode(case["body_b64"]),
            "nonce_ns": int(h["x-bittensor-nonce"]),
            "sender_ss58": h["x-bittensor-hotkey"],
            "receiver_ss58": h.get("x-bittensor-receiver", GATEWAY_HOTKEY),
        }
        scheme = h.get("x-bittensor-crypto", "sr25519")
        assert btauth_payload(scheme=scheme, **args) == bt.http_auth.build_payload(
            scheme=scheme, **args
        ), case["name"]


def test_ed25519_signature_equals_the_vector_byte_for_byte(vectors):
    # ed25519 signatures are deterministic: same key, same bytes, same signature.
    case = next(c for c in _ok_cases(vectors) if c["name"] == "ed25519_ok")
    kp = Keypair.create_from_uri("//Alice", crypto_type=0)
    headers = sign_btauth(
        kp,
        method=case["method"],
        path=case["path"],
        body=base64.b64decode(case["body_b64"]),
        receiver_ss58=GATEWAY_HOTKEY,
        nonce_ns=int(case["headers"]["X-Bittensor-Nonce"]),
    )
    assert headers == case["headers"]


def test_sdk_signatures_verify_with_bittensor_on_every_ok_vector(vectors, keys: Keys):
    by_address = {keys.alice.ss58_address: keys.alice, keys.alice_ed.ss58_address: keys.alice_ed}
    for case in _ok_cases(vectors):
        h = {k.lower(): v for k, v in case["headers"].items()}
        kp = by_address[h["x-bittensor-hotkey"]]
        body = base64.b64decode(case["body_b64"])
        nonce = int(h["x-bittensor-nonce"])
        headers = sign_btauth(
            kp,
            method=case["method"],
            path=case["path"],
            body=body,
            receiver_ss58=GATEWAY_HOTKEY,
            nonce_ns=nonce,
        )
        caller = bt.http_auth.verify(
            headers,
            body,
            method=case["method"].upper(),
            path=case["path"],
            self_hotkey_ss58=GATEWAY_HOTKEY,
            now_ns=int(case["now_ns"]),
            nonce_store=bt.http_auth.InMemoryNonceStore(),
        )
        assert caller.hotkey_ss58 == kp.ss58_address, case["name"]


def test_epistula_matches_the_vectors(vectors, keys: Keys):
    for case in vectors["epistula_v2"]["cases"]:
        if case["expect"] != "ok" or case["signed_message"].startswith("<Bytes>"):
            continue
        h = case["headers"]
        body = base64.b64decode(case["body_b64"])
        message = epistula_message(
            body=body,
            uuid=h["Epistula-Uuid"],
            timestamp_ms=int(h["Epistula-Timestamp"]),
            signed_for=h["Epistula-Signed-For"],
        )
        assert message == case["signed_message"].encode()
        ours = sign_epistula(
            keys.alice,
            body=body,
            receiver_ss58=GATEWAY_HOTKEY,
            timestamp_ms=int(h["Epistula-Timestamp"]),
            request_uuid=h["Epistula-Uuid"],
        )
        assert {k: v for k, v in ours.items() if k != "Epistula-Request-Signature"} == {
            k: v for k, v in h.items() if k != "Epistula-Request-Signature"
        }
        signature = bytes.fromhex(ours["Epistula-Request-Signature"][2:])
        assert keys.alice.verify(message, signature)
    with pytest.raises(ValueError, match="sr25519"):
        sign_epistula(keys.alice_ed, body=b"", receiver_ss58=GATEWAY_HOTKEY)


def test_coldkey_message_matches_the_vectors(vectors):
    for case in vectors["coldkey_link"]["cases"]:
        if case["expect"] != "ok" or case["signed_message"].startswith("<Bytes>"):
            continue
        message = coldkey_link_message(
            account=case["account"], gateway_hotkey=GATEWAY_HOTKEY, nonce=case["nonce"]
        )
        assert message == case["signed_message"].encode()


def _verifying_transport(seen: list[Any], store: Any) -> httpx.MockTransport:
    """A fake gateway that checks every request with bittensor.http_auth.verify."""

    def handle(request: httpx.Request) -> httpx.Response:
        caller = bt.http_auth.verify(
            dict(request.headers),
            request.content,
            method=request.method,
            path=request.url.raw_path.decode(),
            self_hotkey_ss58=GATEWAY_HOTKEY,
            nonce_store=store,
        )
        seen.append((request.method, request.url.raw_path.decode(), caller.hotkey_ss58))
        if request.url.path == "/v1/auth/session":
            body: Any = {"token": "t", "expires_at": "2099-01-01T00:00:00Z"}
        elif request.url.path == "/v1/usage":
            body = {
                "account": caller.hotkey_ss58,
                "from": "2026-11-01",
                "to": "2026-11-30",
                "days": [],
                "total": {"requests": 0, "input_tokens": 0, "output_tokens": 0, "rao": 0},
            }
        else:
            body = RESULT
        return httpx.Response(200, json=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("crypto", [1, 0])
def test_requests_the_client_signs_verify_with_bittensor(crypto: int):
    kp = Keypair.create_from_uri("//Eve", crypto_type=crypto)
    seen: list[Any] = []
    store = bt.http_auth.InMemoryNonceStore()
    with Client(
        "http://gateway.test",
        keypair=kp,
        receiver=GATEWAY_HOTKEY,
        session=False,
        transport=_verifying_transport(seen, store),
    ) as client:
        assert client.reason("2+2?", max_tokens=8, stop=["\n"]).output == "4"
        client.usage("2026-11-01", "2026-11-30")
        client.create_session()  # sessions are always btauth/1
    assert seen == [
        ("POST", "/v1/reason", kp.ss58_address),
        ("GET", "/v1/usage?from=2026-11-01&to=2026-11-30", kp.ss58_address),
        ("POST", "/v1/auth/session", kp.ss58_address),
    ]


def test_signed_body_is_the_body_sent():
    kp = Keypair.create_from_uri("//Eve")
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=RESULT)

    with Client(
        "http://gateway.test/prefix",
        keypair=kp,
        receiver=GATEWAY_HOTKEY,
        session=False,
        transport=httpx.MockTransport(handle),
    ) as client:
        client.reason("héllo", temperature=0.5, metadata={"a": "b"})
    request = sent[0]
    assert json.loads(request.content) == {
        "input": "héllo",
        "temperature": 0.5,
        "metadata": {"a": "b"},
    }
    # The signature covers the path under the base URL's prefix, and exactly these bytes.
    payload = btauth_payload(
        scheme="sr25519",
        method="POST",
        path="/prefix/v1/reason",
        body=request.content,
        nonce_ns=int(request.headers["x-bittensor-nonce"]),
        sender_ss58=kp.ss58_address,
        receiver_ss58=GATEWAY_HOTKEY,
    )
    assert kp.verify(payload, bytes.fromhex(request.headers["x-bittensor-signature"][2:]))
    assert hashlib.sha256(request.content).hexdigest() in payload.decode()


@pytest.mark.parametrize("scheme", ["btauth", "epistula"])
async def test_requests_the_async_client_signs_verify(scheme: str):
    kp = Keypair.create_from_uri("//Eve")
    seen: list[Any] = []
    store = bt.http_auth.InMemoryNonceStore()
    transport = _verifying_transport(seen, store)
    if scheme == "epistula":
        # bittensor has no Epistula verifier: check the signature over the documented message.
        def handle(request: httpx.Request) -> httpx.Response:
            h = request.headers
            message = epistula_message(
                body=request.content,
                uuid=h["epistula-uuid"],
                timestamp_ms=int(h["epistula-timestamp"]),
                signed_for=h["epistula-signed-for"],
            )
            assert h["epistula-signed-by"] == kp.ss58_address
            assert kp.verify(message, bytes.fromhex(h["epistula-request-signature"][2:]))
            seen.append((request.method, request.url.raw_path.decode(), kp.ss58_address))
            return httpx.Response(200, json=RESULT)

        transport = httpx.MockTransport(handle)
    async with AsyncClient(
        "http://gateway.test",
        keypair=kp,
        receiver=GATEWAY_HOTKEY,
        scheme=scheme,
        session=False,
        transport=transport,
    ) as client:
        assert (await client.reason("2+2?")).output == "4"
    assert seen == [("POST", "/v1/reason", kp.ss58_address)]
