/**
 * Hotkeys: whatever a caller signs with, reduced to one small {@link Signer} interface.
 *
 * Keys come from a secret URI (`//Alice`, `<mnemonic>//hard/soft`), a mnemonic, a 32-byte
 * seed (hex `0x…` or bytes), a bittensor wallet's key file, a polkadot.js `KeyringPair`, or any
 * object with `address`, `type` and `sign` (a hardware or browser-extension signer).
 */
import { Keyring } from "@polkadot/keyring";
import { hexToU8a } from "@polkadot/util";
import { cryptoWaitReady, decodeAddress, encodeAddress } from "@polkadot/util-crypto";

/** The signature schemes btauth/1 knows (Epistula is sr25519 only). */
export type CryptoType = "sr25519" | "ed25519";

/**
 * Something that signs: an SS58 address, its scheme, and raw-message signing. A polkadot.js
 * `KeyringPair` is one as it is.
 */
export interface Signer {
  /** SS58 address; re-encoded with prefix 42 (the only spelling the gateway accepts). */
  readonly address: string;
  /** `sr25519` or `ed25519`. */
  readonly type: string;
  /** Signs the message bytes as they are (no `<Bytes>` wrapping needed). */
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/** A key from a secret: a URI, mnemonic or hex seed string, or seed bytes. */
export interface SecretKey {
  /** A secret URI (`//Alice`), a mnemonic (with optional `//derivation`), or a `0x` hex seed. */
  uri?: string;
  /** A 32-byte seed. */
  seed?: Uint8Array;
  /** The scheme; default `sr25519`. */
  type?: CryptoType;
}

/**
 * A bittensor wallet key file's contents (`~/.bittensor/wallets/<wallet>/hotkeys/<hotkey>`,
 * an unencrypted JSON object), as `JSON.parse` gives it. bittensor keys are sr25519.
 */
export interface WalletKeyfile {
  secretSeed?: string;
  secretPhrase?: string;
  ss58Address?: string;
  /** The file's other fields (`publicKey`, `accountId`, …) are not needed. */
  [field: string]: unknown;
}

/**
 * Everything `new Client({ keypair })` takes. A bare string is a secret URI (or mnemonic, or
 * `0x` seed) for sr25519.
 */
export type KeypairInput = Signer | SecretKey | WalletKeyfile | string;

/** A signer ready to use: the canonical address and the scheme checked. */
export interface ResolvedSigner {
  readonly address: string;
  readonly crypto: CryptoType;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

function isSigner(input: KeypairInput): input is Signer {
  return typeof input === "object" && typeof (input as Signer).sign === "function";
}

/** The canonical (prefix 42) spelling of an address or public key. */
export function canonicalAddress(addressOrPublicKey: string | Uint8Array): string {
  const publicKey =
    typeof addressOrPublicKey === "string" ? decodeAddress(addressOrPublicKey) : addressOrPublicKey;
  return encodeAddress(publicKey, 42);
}

function isKeyfile(input: object): input is WalletKeyfile {
  return "secretSeed" in input || "secretPhrase" in input;
}

/** Makes a polkadot.js pair from a secret (waits for the crypto backend first). */
export async function keypairFromSecret(secret: SecretKey | WalletKeyfile | string) {
  await cryptoWaitReady();
  if (typeof secret === "object" && isKeyfile(secret)) {
    const keyring = new Keyring({ type: "sr25519", ss58Format: 42 });
    const pair = secret.secretSeed
      ? keyring.addFromSeed(hexToU8a(secret.secretSeed))
      : keyring.addFromUri(secret.secretPhrase ?? "");
    if (secret.ss58Address && canonicalAddress(secret.ss58Address) !== pair.address) {
      throw new TypeError("keypair: the key file's secret does not match its ss58Address");
    }
    return pair;
  }
  const { uri, seed, type = "sr25519" } = typeof secret === "string" ? { uri: secret } : secret;
  const keyring = new Keyring({ type, ss58Format: 42 });
  if (seed) return keyring.addFromSeed(seed);
  if (uri) return keyring.addFromUri(uri);
  throw new TypeError("keypair: give a `uri` (secret URI, mnemonic or 0x seed) or a `seed`");
}

/** Resolves any {@link KeypairInput} into a {@link ResolvedSigner}. */
export async function resolveSigner(input: KeypairInput): Promise<ResolvedSigner> {
  await cryptoWaitReady();
  const signer: Signer = isSigner(input) ? input : await keypairFromSecret(input);
  if (signer.type !== "sr25519" && signer.type !== "ed25519") {
    throw new TypeError(`keypair: ${signer.type} keys cannot sign for the gateway (sr25519 or ed25519)`);
  }
  const crypto = signer.type;
  const publicKey = (signer as { publicKey?: Uint8Array }).publicKey;
  const address = canonicalAddress(publicKey instanceof Uint8Array ? publicKey : signer.address);
  return {
    address,
    crypto,
    sign: async (message) => signer.sign(message),
  };
}
