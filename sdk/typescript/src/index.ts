/**
 * `@affine/reason`: the TypeScript client of the Affine Reasoning API gateway.
 *
 * ```ts
 * import { Client, ApiError } from "@affine/reason";
 * const client = new Client({ baseUrl: "http://localhost:8080", token: process.env.TOKEN });
 * const answer = await client.reason({ input: "2+2?" });
 * console.log(answer.output, answer.cost.rao, answer.cost.tao);
 * ```
 */
export { Client, ReasonStream } from "./client.js";
export type { CallOptions, ClientOptions, ReasonEvent, RetryInfo, Scheme } from "./client.js";
export { ApiError } from "./errors.js";
export type { ApiErrorInit, ErrorCode } from "./errors.js";
export { EventStream } from "./stream.js";
export { ResponseStream, outputText, reasoningText } from "./responses.js";
export type {
  ResponseEvent,
  ResponseMessageItem,
  ResponseObject,
  ResponseOutputItem,
  ResponseReasoningItem,
  ResponsesRequest,
  ResponsesResult,
  ResponseTerminalType,
  ResponseTextPart,
  ResponseUsage,
} from "./responses.js";
export { parseRateLimit, parseRetryAfter } from "./ratelimit.js";
export type { RateLimit, RateLimitPolicy } from "./ratelimit.js";
export { RAO_PER_TAO, costOf, raoToTao, taoToRao } from "./money.js";
export type { Cost } from "./money.js";
export { parseJson } from "./json.js";
export type { Exact } from "./json.js";
export { btauthHeaders, btauthPayload, sha256Hex } from "./auth/btauth.js";
export type { BtauthFields, BtauthOptions } from "./auth/btauth.js";
export { epistulaHeaders, epistulaMessage } from "./auth/epistula.js";
export type { EpistulaOptions } from "./auth/epistula.js";
export { coldkeyLinkMessage, coldkeyLinkRequest } from "./auth/coldkey.js";
export { canonicalAddress, keypairFromSecret, resolveSigner } from "./auth/keypair.js";
export type { CryptoType, KeypairInput, ResolvedSigner, SecretKey, Signer, WalletKeyfile } from "./auth/keypair.js";
export { nextNonce, nonceText } from "./auth/nonce.js";
export type * from "./types.js";
export type { components, paths, operations } from "./generated/openapi.js";
