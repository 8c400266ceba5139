"""btauth/1 and Epistula v2 request signatures, byte for byte as ``bittensor.http_auth`` makes.

Nothing here needs the ``bittensor`` package: a keypair is anything with ``ss58_address``,
``crypto_type`` (0 ed25519, 1 sr25519, as ``bittensor_wallet.Keypair``) and
``sign(bytes) -> bytes``. The signed bytes are specified in docs/API.md §3 and fixed by the
vectors in ``tests/vectors``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Protocol, runtime_checkable

BTAUTH_PROTOCOL = "btauth/1"
CRYPTO_ED25519 = 0
CRYPTO_SR25519 = 1
_SCHEMES = {CRYPTO_ED25519: "ed25519", CRYPTO_SR25519: "sr25519"}

#: Header names of the two signature schemes (any of them marks a request as signed).
BTAUTH_HEADERS = (
    "X-Bittensor-Version",
    "X-Bittensor-Hotkey",
    "X-Bittensor-Nonce",
    "X-Bittensor-Receiver",
    "X-Bittensor-Crypto",
    "X-Bittensor-Signature",
)
EPISTULA_HEADERS = (
    "Epistula-Version",
    "Epistula-Timestamp",
    "Epistula-Uuid",
    "Epistula-Signed-By",
    "Epistula-Signed-For",
    "Epistula-Request-Signature",
)


@runtime_checkable
class Keypair(Protocol):
    """What signing needs of a key: a ``bittensor_wallet.Keypair`` fits, as does any signer."""

    @property
    def ss58_address(self) -> str:
        """The SS58 address (prefix 42) of the public key."""
        ...

    @property
    def crypto_type(self) -> int:
        """0 for ed25519, 1 for sr25519."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data``."""
        ...


def scheme_of(keypair: Keypair) -> str:
    """``sr25519`` or ``ed25519``; another crypto type cannot sign btauth/1."""
    scheme = _SCHEMES.get(int(keypair.crypto_type))
    if scheme is None:
        raise ValueError(f"cannot sign requests with crypto type {keypair.crypto_type!r}")
    return scheme


class _Clock:
    """Nanosecond nonces that never repeat in this process, even on a coarse clock."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def nonce_ns(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


_clock = _Clock()


def btauth_payload(
    *,
    scheme: str,
    method: str,
    path: str,
    body: bytes,
    nonce_ns: int,
    sender_ss58: str,
    receiver_ss58: str,
) -> bytes:
    """The exact bytes btauth/1 signs: eight lines joined with ``\\n``, no trailing newline."""
    return "\n".join(
        (
            BTAUTH_PROTOCOL,
            scheme,
            method.upper(),
            path,
            hashlib.sha256(body).hexdigest(),
            str(nonce_ns),
            sender_ss58,
            receiver_ss58,
        )
    ).encode()


def sign_btauth(
    keypair: Keypair,
    *,
    method: str,
    path: str,
    body: bytes,
    receiver_ss58: str,
    nonce_ns: int | None = None,
) -> dict[str, str]:
    """btauth/1 headers for one request (``path`` with its ``?query`` exactly as sent).

    The same headers ``bittensor.http_auth.sign(..., receiver_ss58=...)`` returns:
    ``X-Bittensor-Crypto`` only for ed25519 (absent means sr25519).
    """
    scheme = scheme_of(keypair)
    nonce = _clock.nonce_ns() if nonce_ns is None else int(nonce_ns)
    sender = keypair.ss58_address
    payload = btauth_payload(
        scheme=scheme,
        method=method,
        path=path,
        body=body,
        nonce_ns=nonce,
        sender_ss58=sender,
        receiver_ss58=receiver_ss58,
    )
    signature = keypair.sign(payload)
    headers = {
        "X-Bittensor-Version": "1",
        "X-Bittensor-Hotkey": sender,
        "X-Bittensor-Nonce": str(nonce),
        "X-Bittensor-Signature": "0x" + bytes(signature).hex(),
    }
    if scheme != "sr25519":
        headers["X-Bittensor-Crypto"] = scheme
    headers["X-Bittensor-Receiver"] = receiver_ss58
    return headers


def epistula_message(*, body: bytes, uuid: str, timestamp_ms: int, signed_for: str) -> bytes:
    """The exact bytes Epistula v2 signs: ``{sha256(body) hex}.{uuid}.{timestamp}.{signed_for}``."""
    return f"{hashlib.sha256(body).hexdigest()}.{uuid}.{timestamp_ms}.{signed_for}".encode()


def sign_epistula(
    keypair: Keypair,
    *,
    body: bytes,
    receiver_ss58: str,
    timestamp_ms: int | None = None,
    request_uuid: str | None = None,
) -> dict[str, str]:
    """Epistula v2 headers for one request (sr25519 keys only, as the protocol says)."""
    if scheme_of(keypair) != "sr25519":
        raise ValueError("Epistula v2 signs with sr25519 keys only")
    ts = time.time_ns() // 1_000_000 if timestamp_ms is None else int(timestamp_ms)
    rid = str(uuid.uuid4()) if request_uuid is None else request_uuid
    message = epistula_message(body=body, uuid=rid, timestamp_ms=ts, signed_for=receiver_ss58)
    return {
        "Epistula-Version": "2",
        "Epistula-Timestamp": str(ts),
        "Epistula-Uuid": rid,
        "Epistula-Signed-By": keypair.ss58_address,
        "Epistula-Signed-For": receiver_ss58,
        "Epistula-Request-Signature": "0x" + bytes(keypair.sign(message)).hex(),
    }


def coldkey_link_message(*, account: str, gateway_hotkey: str, nonce: str) -> bytes:
    """What a coldkey signs to link itself to ``account`` (docs/API.md §6)."""
    return f"affine-gateway:link-coldkey:{account}:{gateway_hotkey}:{nonce}".encode()


def has_credentials(headers: object) -> bool:
    """True when caller-supplied headers already carry a credential of any kind."""
    names = {str(k).lower() for k in headers} if hasattr(headers, "__iter__") else set()
    marks = {"authorization"} | {h.lower() for h in BTAUTH_HEADERS + EPISTULA_HEADERS}
    return bool(names & marks)
