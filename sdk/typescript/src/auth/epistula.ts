/**
 * Epistula v2 (docs/API.md §3.2): sr25519 over
 * `"{sha256(body) hex}.{uuid}.{timestamp ms}.{signed_for}"`. It signs neither the method nor
 * the path, which is why the gateway refuses it on `POST /v1/auth/session`.
 */
import { stringToU8a, u8aToHex } from "@polkadot/util";
import { sha256Hex } from "./btauth.js";
import type { ResolvedSigner } from "./keypair.js";

/** The exact text Epistula v2 signs. */
export function epistulaMessage(
  body: Uint8Array,
  uuid: string,
  timestampMs: bigint | number | string,
  signedFor: string,
): string {
  return `${sha256Hex(body)}.${uuid}.${String(timestampMs)}.${signedFor}`;
}

/** Options of {@link epistulaHeaders}. */
export interface EpistulaOptions {
  body?: Uint8Array | string | undefined;
  receiver: string;
  /** Default: a random UUID. */
  uuid?: string | undefined;
  /** Default: now, in milliseconds. */
  timestampMs?: bigint | number | undefined;
}

/** Signs a request with Epistula v2 and returns its headers. */
export async function epistulaHeaders(
  signer: ResolvedSigner,
  options: EpistulaOptions,
): Promise<Record<string, string>> {
  if (signer.crypto !== "sr25519") {
    throw new TypeError("Epistula v2 signs with sr25519 only; use btauth/1 for an ed25519 key");
  }
  const body =
    typeof options.body === "string" ? stringToU8a(options.body) : (options.body ?? new Uint8Array());
  const uuid = options.uuid ?? globalThis.crypto.randomUUID();
  const timestamp = String(options.timestampMs ?? Date.now());
  const message = epistulaMessage(body, uuid, timestamp, options.receiver);
  const signature = await signer.sign(stringToU8a(message));
  return {
    "Epistula-Version": "2",
    "Epistula-Timestamp": timestamp,
    "Epistula-Uuid": uuid,
    "Epistula-Signed-By": signer.address,
    "Epistula-Signed-For": options.receiver,
    "Epistula-Request-Signature": u8aToHex(signature),
  };
}
