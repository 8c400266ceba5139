#!/usr/bin/env python3
"""Generates tests/vectors/coldkey_link.json: coldkey-link signatures made by the bittensor SDK.

A caller links a coldkey to its gateway account by signing (sr25519) the UTF-8 text

    affine-gateway:link-coldkey:<account id>:<gateway hotkey ss58>:<nonce>

either raw or wrapped in `<Bytes>...</Bytes>` (what polkadot.js `signRaw` wallets produce).
Each case names what the caller *presents* (account, coldkey, nonce, signature) and what the
gateway, whose hotkey is `gateway_hotkey`, must answer. `signed_message` is the text the key
actually signed, so a refused case shows which part differs.

Run from the repository root with bittensor-wallet installed (`pip install
bittensor-wallet==4.1.1`):

    python3 tests/vectors/gen_coldkey_links.py > tests/vectors/coldkey_link.json

sr25519 signatures are randomised, so every run writes different signatures for the same
cases; all of them verify the same way.
"""

import json
import sys

import bittensor_wallet
from bittensor_wallet import Keypair

# The gateway hotkey the test harness runs with: the dev hotkey //Bob (config::DEV_HOTKEY).
GATEWAY_HOTKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
# The enterprise account every test harness creates (tests/common TEST_ACCOUNT).
ACCOUNT = "tester"
# A fixed, public test mnemonic: never a real wallet.
MNEMONIC = (
    "fitness wasp favorite sweet lecture light differ behind account approve soup gossip"
)


def message(account: str, hotkey: str, nonce: str) -> str:
    return f"affine-gateway:link-coldkey:{account}:{hotkey}:{nonce}"


def sign(key: Keypair, text: str, wrapped: bool) -> str:
    payload = f"<Bytes>{text}</Bytes>" if wrapped else text
    return "0x" + key.sign(payload.encode("utf-8")).hex()


def case(name, key, *, nonce, expect, note, signed_account=ACCOUNT,
         signed_hotkey=GATEWAY_HOTKEY, signed_nonce=None, wrapped=False, presented_coldkey=None):
    signed_nonce = nonce if signed_nonce is None else signed_nonce
    signed = message(signed_account, signed_hotkey, signed_nonce)
    sig = sign(key, signed, wrapped)
    assert key.verify((f"<Bytes>{signed}</Bytes>" if wrapped else signed).encode(), bytes.fromhex(sig[2:]))
    return {
        "name": name,
        "account": ACCOUNT,
        "coldkey": presented_coldkey or key.ss58_address,
        "nonce": nonce,
        "signature": sig,
        "signed_message": f"<Bytes>{signed}</Bytes>" if wrapped else signed,
        "expect": expect,
        "note": note,
    }


def main() -> None:
    alice = Keypair.create_from_uri("//Alice")
    mnem = Keypair.create_from_mnemonic(MNEMONIC)
    cases = [
        case("alice_raw_ok", alice, nonce="vec-alice-raw-1", expect="ok",
             note="//Alice signs the raw message"),
        case("mnemonic_wrapped_ok", mnem, nonce="vec-mnem-wrapped-1", expect="ok",
             wrapped=True, note="a mnemonic key signs the <Bytes>-wrapped message"),
        case("mnemonic_raw_ok", mnem, nonce="2026-01-01T00:00:00Z.7", expect="ok",
             note="a mnemonic key, raw, a nonce using every allowed punctuation mark"),
        case("other_account_refused", alice, nonce="vec-alice-other-acct", expect="bad_signature",
             signed_account="someone-else",
             note="signed for another account id, presented by this account"),
        case("other_gateway_refused", alice, nonce="vec-alice-other-gw", expect="bad_signature",
             signed_hotkey=alice.ss58_address,
             note="signed for another gateway hotkey (//Alice's)"),
        case("tampered_nonce_refused", mnem, nonce="vec-mnem-nonce-2", expect="bad_signature",
             signed_nonce="vec-mnem-nonce-1", note="signed with one nonce, presented with another"),
        case("other_coldkey_refused", alice, nonce="vec-alice-as-mnem", expect="bad_signature",
             presented_coldkey=mnem.ss58_address,
             note="signed by //Alice, presented as the mnemonic key's coldkey"),
    ]
    out = {
        "protocol": "affine-gateway coldkey link",
        "generated_with": f"bittensor-wallet {getattr(bittensor_wallet, '__version__', '4.1.1')} (Keypair.sign)",
        "message_format": "affine-gateway:link-coldkey:<account id>:<gateway hotkey ss58>:<nonce>",
        "gateway_hotkey": GATEWAY_HOTKEY,
        "keys": {"alice": alice.ss58_address, "mnemonic": mnem.ss58_address},
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
