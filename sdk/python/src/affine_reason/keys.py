"""Keypairs from a URI, seed, mnemonic or bittensor wallet (needs ``affine-reason[wallet]``).

The client takes any object with ``ss58_address``, ``crypto_type`` and ``sign(bytes)``; these
helpers build ``bittensor_wallet.Keypair`` objects for the usual sources, so the heavy
``bittensor`` package is never needed.
"""

from __future__ import annotations

from typing import Any

from .signing import CRYPTO_ED25519, CRYPTO_SR25519, Keypair

__all__ = ["from_mnemonic", "from_seed", "from_uri", "from_wallet", "resolve_keypair"]


def _crypto(crypto: str) -> int:
    try:
        return {"sr25519": CRYPTO_SR25519, "ed25519": CRYPTO_ED25519}[crypto.lower()]
    except KeyError:
        raise ValueError(f"crypto must be 'sr25519' or 'ed25519', not {crypto!r}") from None


def _keypair_class() -> Any:
    try:
        from bittensor_wallet import Keypair as BtKeypair
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "affine_reason.keys needs bittensor-wallet: pip install 'affine-reason[wallet]'"
        ) from None
    return BtKeypair


def from_uri(uri: str, *, crypto: str = "sr25519") -> Keypair:
    """A keypair from a Substrate URI such as ``//Alice`` or ``<mnemonic>//hard/soft``."""
    kp: Keypair = _keypair_class().create_from_uri(uri, crypto_type=_crypto(crypto))
    return kp


def from_mnemonic(mnemonic: str, *, crypto: str = "sr25519") -> Keypair:
    """A keypair from a BIP-39 mnemonic."""
    kp: Keypair = _keypair_class().create_from_mnemonic(mnemonic, crypto_type=_crypto(crypto))
    return kp


def from_seed(seed: str | bytes, *, crypto: str = "sr25519") -> Keypair:
    """A keypair from a 32-byte seed (bytes or ``0x`` hex)."""
    if isinstance(seed, bytes):
        seed = "0x" + seed.hex()
    kp: Keypair = _keypair_class().create_from_seed(seed, crypto_type=_crypto(crypto))
    return kp


def from_wallet(name: str = "default", hotkey: str = "default", path: str | None = None) -> Keypair:
    """The hotkey of a bittensor wallet on disk (``~/.bittensor/wallets`` by default)."""
    try:
        from bittensor_wallet import Wallet
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "affine_reason.keys needs bittensor-wallet: pip install 'affine-reason[wallet]'"
        ) from None
    wallet = (
        Wallet(name=name, hotkey=hotkey, path=path) if path else Wallet(name=name, hotkey=hotkey)
    )
    kp: Keypair = wallet.hotkey
    return kp


def resolve_keypair(value: Any) -> Keypair:
    """The signing keypair of ``value``: a keypair itself, or a wallet's hotkey."""
    if isinstance(value, Keypair):
        return value
    hotkey = getattr(value, "hotkey", None)
    if hotkey is not None and isinstance(hotkey, Keypair):
        return hotkey
    raise TypeError(
        "keypair must have ss58_address, crypto_type and sign(bytes) "
        "(a bittensor_wallet.Keypair), or be a wallet with such a hotkey"
    )
