/** The error every refusal of the gateway becomes. */
import { parseJson } from "./json.js";
import { parseRateLimit, parseRetryAfter, type RateLimit } from "./ratelimit.js";
import type { components } from "./generated/openapi.js";

/** The gateway's stable error codes (docs/API.md §8); unknown future codes are plain strings. */
export type ErrorCode = components["schemas"]["ErrorCode"] | (string & {});

/** What {@link ApiError} is built from. */
export interface ApiErrorInit {
  status: number;
  code: ErrorCode;
  message: string;
  requestId?: string | undefined;
  retryAfter?: number | undefined;
  title?: string | undefined;
  type?: string | undefined;
  rateLimit?: RateLimit | undefined;
  body?: unknown;
}

/**
 * A refusal by the gateway: an HTTP error (problem+json, or the OpenAI error shape on
 * `/v1/chat/completions`, `/v1/responses` and `/v1/models`), or the `error` event that ended a
 * stream.
 *
 * Branch on {@link ApiError.code} (stable), not on the message (for humans). Treat an unknown
 * code by its {@link ApiError.status}.
 */
export class ApiError extends Error {
  override readonly name = "ApiError";
  /** HTTP status (for a stream's `error` event: the problem's `status`). */
  readonly status: number;
  /** The stable machine-readable code, e.g. `rate_limited`, `insufficient_balance`. */
  readonly code: ErrorCode;
  /** The request id (`X-Request-Id`, or the problem's `request_id`). */
  readonly requestId: string | undefined;
  /** `Retry-After` in seconds, when the gateway sent one (429, most 503s). */
  readonly retryAfter: number | undefined;
  /** The problem's `title`. */
  readonly title: string | undefined;
  /** The problem's `type` (a link to the code's row on `/docs`). */
  readonly type: string | undefined;
  /** The parsed `RateLimit` headers of the refusal, when sent. */
  readonly rateLimit: RateLimit | undefined;
  /** The parsed error body as it came. */
  readonly body: unknown;

  constructor(init: ApiErrorInit) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.title = init.title;
    this.type = init.type;
    this.rateLimit = init.rateLimit;
    this.body = init.body;
  }
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** An {@link ApiError} from a problem object (an HTTP body or a stream's `error` event). */
export function fromProblem(
  problem: unknown,
  fallback: { status: number; requestId?: string | undefined; headers?: Headers | undefined },
): ApiError {
  const p = (problem ?? {}) as Record<string, unknown>;
  // The OpenAI shape: {"error": {"message", "type", "code"}}.
  const openai =
    p.error && typeof p.error === "object" ? (p.error as Record<string, unknown>) : undefined;
  const status = typeof p.status === "number" ? p.status : fallback.status;
  const code = str(openai?.code) ?? str(p.code) ?? `http_${status}`;
  const detail = str(openai?.message) ?? str(p.detail) ?? str(p.title) ?? `HTTP ${status}`;
  const headers = fallback.headers;
  return new ApiError({
    status,
    code,
    message: `${code}: ${detail}`,
    requestId: str(p.request_id) ?? fallback.requestId ?? headers?.get("x-request-id") ?? undefined,
    retryAfter: headers ? parseRetryAfter(headers) : undefined,
    title: str(p.title),
    type: str(openai?.type) ?? str(p.type),
    rateLimit: headers ? parseRateLimit(headers) : undefined,
    body: problem,
  });
}

/** Reads a refused response into an {@link ApiError}. */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    const text = await response.text();
    body = text ? parseJson(text) : undefined;
  } catch {
    body = undefined;
  }
  return fromProblem(body, { status: response.status, headers: response.headers });
}
