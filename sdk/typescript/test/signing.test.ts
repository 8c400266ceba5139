// Signing against the reference vectors the bittensor SDK produced (tests/vectors, also in
// /work/shared/vectors): the bytes this SDK signs are the bytes bittensor signed, and ed25519
// (deterministic) reproduces bittensor's signatures exactly.
import assert from "node:assert/strict";
import { test } from "node:test";
import { u8aToHex, stringToU8a } from "@polkadot/util";
import { cryptoWaitReady, signatureVerify } from "@polkadot/util-crypto";
import {
  btauthHeaders,
  btauthPayload,
  coldkeyLinkMessage,
  epistulaHeaders,
  epistulaMessage,
  nextNonce,
  nonceText,
  resolveSigner,
  type CryptoType,
} from "@affine/reason";
import { repoJson } from "./repo.js";

await cryptoWaitReady();

interface BtCase {
  name: string;
  method: string;
  path: string;
  body_b64: string;
  headers: Record<string, string>;
  expect: string;
}

function lower(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

const btauth = repoJson<{ self_hotkey_ss58: string; keys: Record<string, string>; cases: BtCase[] }>(
  "tests/vectors/btauth_v1.json",
);

test("btauth/1: every accepted vector's signature covers exactly the payload this SDK builds", () => {
  const accepted = btauth.cases.filter((c) => c.expect === "ok");
  assert.equal(accepted.length, 8);
  for (const c of accepted) {
    const h = lower(c.headers);
    const payload = btauthPayload({
      crypto: (h["x-bittensor-crypto"] ?? "sr25519") as CryptoType,
      method: c.method,
      path: c.path,
      body: Buffer.from(c.body_b64, "base64"),
      nonce: h["x-bittensor-nonce"]!,
      sender: h["x-bittensor-hotkey"]!,
      receiver: h["x-bittensor-receiver"]!,
    });
    const wrapped = c.name === "bytes_wrapped_signature_ok";
    const message = wrapped ? stringToU8a(`<Bytes>${new TextDecoder().decode(payload)}</Bytes>`) : payload;
    const verdict = signatureVerify(message, h["x-bittensor-signature"]!, h["x-bittensor-hotkey"]!);
    assert.ok(verdict.isValid, c.name);
  }
});

test("btauth/1: tampered vectors do not verify over this SDK's payload", () => {
  for (const name of ["tampered_body", "different_path", "query_string_dropped", "claimed_other_hotkey"]) {
    const c = btauth.cases.find((x) => x.name === name)!;
    const h = lower(c.headers);
    const payload = btauthPayload({
      crypto: "sr25519",
      method: c.method,
      path: c.path,
      body: Buffer.from(c.body_b64, "base64"),
      nonce: h["x-bittensor-nonce"]!,
      sender: h["x-bittensor-hotkey"]!,
      receiver: h["x-bittensor-receiver"]!,
    });
    assert.equal(signatureVerify(payload, h["x-bittensor-signature"]!, h["x-bittensor-hotkey"]!).isValid, false, name);
  }
});

test("btauth/1: ed25519 //Alice reproduces bittensor's signature byte for byte", async () => {
  const c = btauth.cases.find((x) => x.name === "ed25519_ok")!;
  const key = await resolveSigner({ uri: "//Alice", type: "ed25519" });
  assert.equal(key.address, btauth.keys.alice_ed25519);
  const headers = await btauthHeaders(key, {
    method: c.method,
    path: c.path,
    body: Buffer.from(c.body_b64, "base64"),
    receiver: btauth.self_hotkey_ss58,
    nonce: c.headers["X-Bittensor-Nonce"]!,
  });
  assert.deepEqual(headers, c.headers);
});

test("btauth/1: sr25519 headers have bittensor's shape and verify", async () => {
  const key = await resolveSigner("//Alice");
  assert.equal(key.address, btauth.keys.alice_sr25519);
  const body = stringToU8a('{"input":"hi"}');
  const headers = await btauthHeaders(key, { method: "post", path: "/v1/reason", body, receiver: btauth.self_hotkey_ss58, nonce: 5n });
  assert.deepEqual(Object.keys(headers).sort(), [
    "X-Bittensor-Hotkey", "X-Bittensor-Nonce", "X-Bittensor-Receiver", "X-Bittensor-Signature", "X-Bittensor-Version",
  ]);
  const payload = btauthPayload({ crypto: "sr25519", method: "POST", path: "/v1/reason", body, nonce: "5", sender: key.address, receiver: btauth.self_hotkey_ss58 });
  assert.ok(signatureVerify(payload, headers["X-Bittensor-Signature"]!, key.address).isValid);
});

test("nonces above 2^53 are kept exactly, as bigint and decimal text", async () => {
  const big = 2n ** 53n + 1n; // 9007199254740993: a JS number rounds it to ...992
  assert.notEqual(BigInt(Number(big)), big);
  assert.equal(nonceText(big), "9007199254740993");
  assert.equal(nonceText("1800000000000000001"), "1800000000000000001");
  assert.equal(nonceText("0001800000000000000001"), "1800000000000000001");
  const key = await resolveSigner("//Alice");
  const headers = await btauthHeaders(key, { method: "GET", path: "/v1/account", receiver: btauth.self_hotkey_ss58, nonce: 1800000000000000001n });
  assert.equal(headers["X-Bittensor-Nonce"], "1800000000000000001");
  const lines = new TextDecoder().decode(
    btauthPayload({ crypto: "sr25519", method: "GET", path: "/v1/account", body: new Uint8Array(), nonce: 1800000000000000001n, sender: key.address, receiver: btauth.self_hotkey_ss58 }),
  ).split("\n");
  assert.equal(lines[5], "1800000000000000001");
  // Fresh nonces are nanoseconds (far above 2^53) and strictly increasing within a millisecond.
  const a = nextNonce(1_800_000_000_000);
  const b = nextNonce(1_800_000_000_000);
  assert.equal(a, 1_800_000_000_000_000_000n);
  assert.equal(b, a + 1n);
  assert.ok(nextNonce() > 2n ** 53n);
  assert.throws(() => nonceText("12ab"), RangeError);
});

interface EpCase {
  name: string;
  body_b64: string;
  headers: Record<string, string>;
  signed_message: string;
  expect: string;
}
const epistula = repoJson<{ self_hotkey_ss58: string; cases: EpCase[] }>("tests/vectors/epistula_v2.json");

test("Epistula v2: this SDK's message is the vectors' signed message, and their signatures verify", () => {
  for (const c of epistula.cases.filter((x) => x.name !== "tampered_body" && x.name !== "timestamp_not_integer")) {
    const h = c.headers;
    const message = epistulaMessage(
      Buffer.from(c.body_b64, "base64"),
      h["Epistula-Uuid"]!,
      h["Epistula-Timestamp"]!,
      h["Epistula-Signed-For"] ?? "",
    );
    assert.equal(message, c.signed_message, c.name);
    if (c.expect === "ok") {
      assert.ok(signatureVerify(message, h["Epistula-Request-Signature"]!, h["Epistula-Signed-By"]!).isValid, c.name);
    }
  }
});

test("Epistula v2: headers this SDK signs verify, and ed25519 keys are refused", async () => {
  const key = await resolveSigner("//Alice");
  const body = stringToU8a('{"input":"hi"}');
  const headers = await epistulaHeaders(key, { body, receiver: epistula.self_hotkey_ss58, uuid: "3f2b6c1e-4a5d-4e8f-9a0b-1c2d3e4f5a6b", timestampMs: 1_799_999_999_000 });
  assert.equal(headers["Epistula-Timestamp"], "1799999999000");
  const message = epistulaMessage(body, headers["Epistula-Uuid"]!, headers["Epistula-Timestamp"]!, epistula.self_hotkey_ss58);
  assert.ok(signatureVerify(message, headers["Epistula-Request-Signature"]!, key.address).isValid);
  const ed = await resolveSigner({ uri: "//Alice", type: "ed25519" });
  await assert.rejects(epistulaHeaders(ed, { body, receiver: epistula.self_hotkey_ss58 }), TypeError);
});

test("coldkey links: this SDK's message is the vectors' and their signatures verify", async () => {
  const file = repoJson<{ gateway_hotkey: string; cases: Array<{ name: string; account: string; coldkey: string; nonce: string; signature: string; signed_message: string; expect: string }> }>(
    "tests/vectors/coldkey_link.json",
  );
  const ok = file.cases.filter((c) => c.expect === "ok");
  assert.ok(ok.length >= 2);
  for (const c of ok) {
    const message = coldkeyLinkMessage(c.account, file.gateway_hotkey, c.nonce);
    const signed = c.signed_message.startsWith("<Bytes>") ? `<Bytes>${message}</Bytes>` : message;
    assert.equal(signed, c.signed_message, c.name);
    assert.ok(signatureVerify(message, c.signature, c.coldkey).isValid, c.name);
  }
});

test("keys come from a URI, a mnemonic, a seed or a KeyringPair, always as canonical SS58", async () => {
  const mnemonic = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
  const fromMnemonic = await resolveSigner(`${mnemonic}//Alice`);
  const fromUri = await resolveSigner("//Alice");
  assert.equal(fromMnemonic.address, fromUri.address);
  const seed = new Uint8Array(32).fill(7);
  const fromSeed = await resolveSigner({ seed });
  const fromHex = await resolveSigner(u8aToHex(seed));
  assert.equal(fromSeed.address, fromHex.address);
  const { Keyring } = await import("@polkadot/keyring");
  const polkadot = new Keyring({ type: "sr25519", ss58Format: 0 }).addFromUri("//Alice");
  assert.notEqual(polkadot.address, fromUri.address); // prefix 0 spelling
  const fromPair = await resolveSigner(polkadot);
  assert.equal(fromPair.address, fromUri.address); // re-encoded with prefix 42
  // A bittensor wallet's hotkey file, as bittensor writes it (JSON), by seed or by phrase.
  const keyfile = { secretSeed: u8aToHex(seed), ss58Address: fromSeed.address, publicKey: "0x…" };
  assert.equal((await resolveSigner(keyfile)).address, fromSeed.address);
  assert.equal((await resolveSigner({ secretPhrase: `${mnemonic}//Alice` })).address, fromUri.address);
  await assert.rejects(resolveSigner({ secretSeed: u8aToHex(seed), ss58Address: fromUri.address }), TypeError);
});
