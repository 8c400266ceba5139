/**
 * Coldkey links (docs/API.md §6): the coldkey signs
 * `affine-gateway:link-coldkey:<account id>:<gateway hotkey>:<nonce>` with sr25519.
 */
import { u8aToHex, stringToU8a } from "@polkadot/util";
import type { ResolvedSigner } from "./keypair.js";

/** The text a coldkey signs to link itself to `account` on the gateway `gatewayHotkey`. */
export function coldkeyLinkMessage(account: string, gatewayHotkey: string, nonce: string): string {
  return `affine-gateway:link-coldkey:${account}:${gatewayHotkey}:${nonce}`;
}

/** The body of `POST /v1/account/coldkeys`, signed by `coldkey`. */
export async function coldkeyLinkRequest(
  coldkey: ResolvedSigner,
  account: string,
  gatewayHotkey: string,
  nonce: string,
): Promise<{ coldkey: string; nonce: string; signature: string }> {
  if (coldkey.crypto !== "sr25519") throw new TypeError("a coldkey link is signed with sr25519");
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(nonce)) {
    throw new RangeError("a link nonce is 1 to 64 of [A-Za-z0-9._:-]");
  }
  const signature = await coldkey.sign(stringToU8a(coldkeyLinkMessage(account, gatewayHotkey, nonce)));
  return { coldkey: coldkey.address, nonce, signature: u8aToHex(signature) };
}
