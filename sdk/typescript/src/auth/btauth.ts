/**
 * btauth/1, the scheme of the bittensor SDK's `bittensor.http_auth` (docs/API.md §3.1).
 *
 * The signed bytes are eight lines joined with `\n`:
 * `btauth/1`, the scheme, the uppercase method, the path with its query exactly as sent, the
 * lowercase hex SHA-256 of the raw body, the nonce, the sender's SS58, the receiver's SS58.
 */
import { u8aToHex, stringToU8a } from "@polkadot/util";
import { sha256AsU8a } from "@polkadot/util-crypto";
import type { CryptoType, ResolvedSigner } from "./keypair.js";
import { nextNonce, nonceText } from "./nonce.js";

/** Lowercase hex SHA-256 of `body`, without `0x`. */
export function sha256Hex(body: Uint8Array): string {
  return u8aToHex(sha256AsU8a(body), -1, false);
}

/** What one btauth/1 signature covers. */
export interface BtauthFields {
  crypto: CryptoType;
  method: string;
  /** Path and `?query` exactly as sent. */
  path: string;
  body: Uint8Array;
  /** Nanoseconds since the epoch, as `bigint` or decimal string (never a JS number). */
  nonce: bigint | string;
  sender: string;
  receiver: string;
}

/** The exact bytes btauth/1 signs. */
export function btauthPayload(f: BtauthFields): Uint8Array {
  const lines = [
    "btauth/1",
    f.crypto,
    f.method.toUpperCase(),
    f.path,
    sha256Hex(f.body),
    nonceText(f.nonce),
    f.sender,
    f.receiver,
  ];
  return stringToU8a(lines.join("\n"));
}

/** Options of {@link btauthHeaders}. */
export interface BtauthOptions {
  method: string;
  path: string;
  body?: Uint8Array | string | undefined;
  receiver: string;
  /** Default: a fresh one ({@link nextNonce}). */
  nonce?: bigint | string | undefined;
}

/** Signs a request with btauth/1 and returns its headers. */
export async function btauthHeaders(
  signer: ResolvedSigner,
  options: BtauthOptions,
): Promise<Record<string, string>> {
  const body =
    typeof options.body === "string" ? stringToU8a(options.body) : (options.body ?? new Uint8Array());
  const nonce = nonceText(options.nonce ?? nextNonce());
  const payload = btauthPayload({
    crypto: signer.crypto,
    method: options.method,
    path: options.path,
    body,
    nonce,
    sender: signer.address,
    receiver: options.receiver,
  });
  const signature = await signer.sign(payload);
  const headers: Record<string, string> = {
    "X-Bittensor-Version": "1",
    "X-Bittensor-Hotkey": signer.address,
    "X-Bittensor-Nonce": nonce,
    "X-Bittensor-Receiver": options.receiver,
    "X-Bittensor-Signature": u8aToHex(signature),
  };
  // As bittensor.http_auth does: sr25519 is the default and goes unsaid.
  if (signer.crypto !== "sr25519") headers["X-Bittensor-Crypto"] = signer.crypto;
  return headers;
}
