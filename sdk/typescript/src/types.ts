/**
 * The public shapes, derived from the generated OpenAPI types (`generated/openapi.ts`) with
 * money made exact ({@link Exact}).
 */
import type { components } from "./generated/openapi.js";
import type { Exact } from "./json.js";
import type { RateLimit } from "./ratelimit.js";

type S = components["schemas"];

/** Every generated schema, as the OpenAPI document has it (numbers as numbers). */
export type Schemas = S;

/** What every result of a metered call carries besides its body. */
export interface ResponseMeta {
  /** `X-Request-Id` of the answer. */
  requestId: string | undefined;
  /** The parsed `RateLimit-Policy` / `RateLimit` headers, when sent. */
  rateLimit: RateLimit | undefined;
}

/** `POST /v1/reason` body (without `stream`: pick `reason` or `reasonStream`). */
export type ReasonRequest = Omit<S["ReasonRequest"], "stream">;

/** A whole answer: `output`, `reasoning`, `usage`, `cost` (`rao` bigint, `tao` string), `model`, … */
export type ReasonResult = Exact<S["ReasonResponse"]> & ResponseMeta;

/** The result a stream's `done` event carries: the answer without its texts. */
export type ReasonDone = Exact<S["ReasonDoneSchema"]> & ResponseMeta;

/** `GET /v1/account`. */
export type AccountView = Exact<S["AccountView"]>;
/** `GET /v1/models`. */
export type ModelList = Exact<S["ModelList"]>;
/** `GET /v1/winner`. */
export type Winner = Exact<S["WinnerResponse"]>;
/** `GET /v1/usage`. */
export type UsageReport = Exact<S["UsageReport"]>;
/** `GET /v1/stats`. */
export type Stats = Exact<S["Stats"]>;
/** `POST /v1/auth/session`. */
export type Session = S["Session"];
/** A coldkey link (`POST /v1/account/coldkeys`). */
export type ColdkeyLink = Exact<S["ColdkeyLink"]>;
/** `POST /v1/chat/completions` body (without `stream`). */
export type ChatCompletionRequest = Omit<S["ChatCompletionRequest"], "stream">;

/** An OpenAI `chat.completion`, as the provider sent it, plus the gateway's cost header. */
export interface ChatCompletion extends ResponseMeta {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: string; content: string | null; reasoning_content?: string | null } & Record<string, unknown>;
    finish_reason: string | null;
  }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } & Record<string, unknown>;
  /** From `X-Affine-Cost-Rao`. */
  cost: { rao: bigint; tao: string } | undefined;
  [field: string]: unknown;
}

/** One `chat.completion.chunk` of a streamed chat completion. */
export interface ChatCompletionChunk {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string | null; reasoning_content?: string | null } & Record<string, unknown>;
    finish_reason: string | null;
  }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  [field: string]: unknown;
}

/** A range of UTC days, `YYYY-MM-DD`, both ends included. */
export interface DayRange {
  from?: string | undefined;
  to?: string | undefined;
}
