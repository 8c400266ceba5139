/**
 * The client: one object per gateway and credential. Bearer tokens are sent as they are;
 * signed clients sign every request (btauth/1 or Epistula v2) or, by default, trade one
 * btauth/1 signature for a session token and reuse it until shortly before it expires.
 */
import { stringToU8a } from "@polkadot/util";
import type { EventSourceMessage } from "eventsource-parser";
import { btauthHeaders } from "./auth/btauth.js";
import { coldkeyLinkRequest } from "./auth/coldkey.js";
import { epistulaHeaders } from "./auth/epistula.js";
import { resolveSigner, type KeypairInput, type ResolvedSigner } from "./auth/keypair.js";
import { ApiError, errorFromResponse, fromProblem } from "./errors.js";
import { parseJson } from "./json.js";
import { costOf } from "./money.js";
import { parseRateLimit } from "./ratelimit.js";
import {
  ResponseStream,
  responseStep,
  type ResponseObject,
  type ResponsesRequest,
  type ResponsesResult,
} from "./responses.js";
import { sleep } from "./sleep.js";
import { EventStream, type Step } from "./stream.js";
import type {
  AccountView,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ColdkeyLink,
  DayRange,
  ModelList,
  ReasonDone,
  ReasonRequest,
  ReasonResult,
  Session,
  Stats,
  UsageReport,
  Winner,
} from "./types.js";

/** How signed clients sign their requests. */
export type Scheme = "btauth" | "epistula";

/** What {@link ClientOptions.onRetry} is told before each retry. */
export interface RetryInfo {
  /** 1 for the first retry. */
  attempt: number;
  method: string;
  path: string;
  /** The refused status (429, 503), or 0 for a network error. */
  status: number;
  /** The refusal's `code`, when it had one. */
  code: string | undefined;
  /** `Retry-After` in seconds, when sent. */
  retryAfter: number | undefined;
  /** How long the client waits before the retry. */
  delayMs: number;
}

/** Options of `new Client(…)`. */
export interface ClientOptions {
  /** The gateway, e.g. `https://gateway.example` (no `/v1`). */
  baseUrl: string;
  /** A bearer token (an enterprise token, a dev token, or a session token you manage). */
  token?: string | undefined;
  /** A hotkey to sign with: a secret URI, mnemonic, seed, `KeyringPair` or {@link Signer}. */
  keypair?: KeypairInput | undefined;
  /** The gateway's hotkey (`GATEWAY_HOTKEY`), which every signature is bound to. */
  receiver?: string | undefined;
  /** Per-request signatures: `btauth` (default) or `epistula`. Sessions always use btauth/1. */
  scheme?: Scheme | undefined;
  /** Signed clients: trade one signature for a session token (default `true`). */
  session?: boolean | undefined;
  /**
   * Renew the session this long before it expires (default 60 s, or half its lifetime when
   * that is shorter).
   */
  sessionMarginMs?: number | undefined;
  /** Retries of a 429/503 (and network errors of idempotent calls); default 2. */
  maxRetries?: number | undefined;
  /** Retry non-idempotent calls (`reason`, chat, coldkey links) too; default `false`. */
  retryNonIdempotent?: boolean | undefined;
  /** A `Retry-After` longer than this is not waited for: the error is thrown. Default 60 s. */
  maxRetryWaitMs?: number | undefined;
  /** Called before each retry (logging, metrics, tests). */
  onRetry?: ((info: RetryInfo) => void) | undefined;
  /** The `fetch` to use; default the global one. */
  fetch?: typeof fetch | undefined;
  /** Extra headers on every request. */
  headers?: Record<string, string> | undefined;
}

/** Options of one call. */
export interface CallOptions {
  /** Aborts the call (and, for a stream, closes its connection). */
  signal?: AbortSignal | undefined;
  /**
   * Retry this call on 429/503: `true` opts a non-idempotent call in, `false` opts out; a
   * number sets the retries. Default: the client's policy.
   */
  retry?: boolean | number | undefined;
  /** Sent as `X-Request-Id` (1–128 of `[A-Za-z0-9._-]`), echoed back by the gateway. */
  requestId?: string | undefined;
}

type Auth = "caller" | "none" | "session";

interface Send {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  auth: Auth;
  idempotent: boolean;
  call?: CallOptions | undefined;
  accept?: string;
}

const DEFAULT_SESSION_MARGIN_MS = 60_000;
/** The alias the gateway serves the current winner under. */
const WINNER = "affine-winner";

/** A client of the Affine Reasoning API gateway. */
export class Client {
  /** The gateway's base URL, without a trailing `/`. */
  readonly baseUrl: string;
  private readonly options: ClientOptions;
  private readonly fetchImpl: typeof fetch;
  private signerPromise: Promise<ResolvedSigner> | undefined;
  private sessionState: { token: string; expiresAtMs: number; obtainedAtMs: number } | undefined;
  private sessionInFlight: Promise<string> | undefined;

  constructor(options: ClientOptions) {
    if (!options || typeof options.baseUrl !== "string" || !options.baseUrl) {
      throw new TypeError("Client: `baseUrl` is required");
    }
    if (options.token && options.keypair) {
      throw new TypeError("Client: give a `token` or a `keypair`, not both (one credential per request)");
    }
    if (options.keypair && !options.receiver) {
      throw new TypeError("Client: signing needs `receiver`, the gateway's hotkey (GATEWAY_HOTKEY)");
    }
    if (options.scheme && options.scheme !== "btauth" && options.scheme !== "epistula") {
      throw new TypeError(`Client: unknown scheme ${String(options.scheme)} (btauth or epistula)`);
    }
    this.options = options;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("Client: no fetch available; pass `fetch`");
    this.fetchImpl = f;
  }

  /** Whether requests are signed with a hotkey (directly or through sessions). */
  get signed(): boolean {
    return this.options.keypair !== undefined;
  }

  /** The signing hotkey's canonical SS58 address, or `undefined` for bearer clients. */
  async hotkey(): Promise<string | undefined> {
    return this.options.keypair ? (await this.signer()).address : undefined;
  }

  // ------------------------------------------------------------------------------------------
  // The API
  // ------------------------------------------------------------------------------------------

  /** `POST /v1/reason`, whole. Not retried unless asked (`retry: true`): it is not idempotent. */
  async reason(request: ReasonRequest, options?: CallOptions): Promise<ReasonResult> {
    const response = await this.send({
      method: "POST",
      path: "/v1/reason",
      body: { ...request, stream: false },
      auth: "caller",
      idempotent: false,
      call: options,
    });
    const body = (await this.json(response)) as Omit<ReasonResult, "requestId" | "rateLimit">;
    return { ...body, ...meta(response) };
  }

  /**
   * `POST /v1/reason` streamed: `for await (const event of client.reasonStream({ input }))`
   * yields `reasoning` and `output` deltas, then one `done` (with the result: usage, cost,
   * model) or one `error` (an {@link ApiError}). A refusal before the stream began is thrown
   * as an {@link ApiError}. `break` (or `stream.close()`, or the signal) closes the connection.
   */
  reasonStream(request: ReasonRequest, options?: CallOptions): ReasonStream {
    const open = (signal: AbortSignal) =>
      this.send({
        method: "POST",
        path: "/v1/reason",
        body: { ...request, stream: true },
        auth: "caller",
        idempotent: false,
        call: { ...options, signal },
        accept: "text/event-stream",
      });
    return new ReasonStream(open, reasonStep, options?.signal);
  }

  /**
   * `POST /v1/responses` (Open Responses, stateless subset), whole: the `response` object with
   * its reasoning and message items, `usage` and `cost`. `model` defaults to `affine-winner`.
   * Stateful fields are refused by the gateway with `unsupported_parameter`. Not retried unless
   * asked (`retry: true`).
   */
  async responses(request: ResponsesRequest, options?: CallOptions): Promise<ResponsesResult> {
    const response = await this.send({
      method: "POST",
      path: "/v1/responses",
      body: { model: WINNER, ...request, stream: false },
      auth: "caller",
      idempotent: false,
      call: options,
    });
    const body = (await this.json(response)) as ResponseObject;
    return { ...body, ...meta(response) };
  }

  /**
   * `POST /v1/responses` streamed: yields the typed `response.*` events (`response.created`,
   * `response.output_item.added`, `response.reasoning_text.delta`,
   * `response.output_text.delta`, …) and ends after `response.completed`,
   * `response.incomplete` or `response.failed` (an `error` event with an {@link ApiError}
   * comes just before the latter). A refusal before the stream began is thrown.
   */
  responsesStream(request: ResponsesRequest, options?: CallOptions): ResponseStream {
    const open = (signal: AbortSignal) =>
      this.send({
        method: "POST",
        path: "/v1/responses",
        body: { model: WINNER, ...request, stream: true },
        auth: "caller",
        idempotent: false,
        call: { ...options, signal },
        accept: "text/event-stream",
      });
    return new ResponseStream(open, responseStep, options?.signal);
  }

  /** `POST /v1/chat/completions`, whole (OpenAI-compatible), with the cost header parsed. */
  async chatCompletions(request: ChatCompletionRequest, options?: CallOptions): Promise<ChatCompletion> {
    const response = await this.send({
      method: "POST",
      path: "/v1/chat/completions",
      body: { ...request, stream: false },
      auth: "caller",
      idempotent: false,
      call: options,
    });
    const body = (await this.json(response)) as Record<string, unknown>;
    const raoHeader = response.headers.get("x-affine-cost-rao");
    const cost = raoHeader && /^\d+$/.test(raoHeader) ? costOf(BigInt(raoHeader)) : undefined;
    return { ...(body as object), cost, ...meta(response) } as ChatCompletion;
  }

  /**
   * `POST /v1/chat/completions` streamed: yields the provider's `chat.completion.chunk`s until
   * `[DONE]`; a provider failure mid-stream is thrown as an {@link ApiError}.
   */
  chatCompletionsStream(
    request: ChatCompletionRequest,
    options?: CallOptions,
  ): EventStream<ChatCompletionChunk> {
    const open = (signal: AbortSignal) =>
      this.send({
        method: "POST",
        path: "/v1/chat/completions",
        body: { ...request, stream: true },
        auth: "caller",
        idempotent: false,
        call: { ...options, signal },
        accept: "text/event-stream",
      });
    return new EventStream(open, chatStep, options?.signal);
  }

  /** `GET /v1/models`: `affine-winner` and the winner's id, each with its price on your plan. */
  async models(options?: CallOptions): Promise<ModelList> {
    return this.getJson("/v1/models", "caller", options) as Promise<ModelList>;
  }

  /** `GET /v1/winner` (public). */
  async winner(options?: CallOptions): Promise<Winner> {
    return this.getJson("/v1/winner", "none", options) as Promise<Winner>;
  }

  /** `GET /v1/account`: your account, plan limits, what is left, balance and holds. */
  async account(options?: CallOptions): Promise<AccountView> {
    return this.getJson("/v1/account", "caller", options) as Promise<AccountView>;
  }

  /** `GET /v1/usage?from=&to=`: your usage per UTC day and in total. */
  async usage(range: DayRange = {}, options?: CallOptions): Promise<UsageReport> {
    return this.getJson(withRange("/v1/usage", range), "caller", options) as Promise<UsageReport>;
  }

  /** `GET /v1/stats?from=&to=` (public): requests, tokens and unique callers per day. */
  async stats(range: DayRange = {}, options?: CallOptions): Promise<Stats> {
    return this.getJson(withRange("/v1/stats", range), "none", options) as Promise<Stats>;
  }

  /**
   * `POST /v1/auth/session`: signs one btauth/1 request (whatever `scheme` says; the gateway
   * refuses Epistula there) and returns the session token. Signed clients with `session`
   * on use it for the following requests.
   */
  async createSession(options?: CallOptions): Promise<Session> {
    return this.exchange(options);
  }

  /**
   * `POST /v1/account/coldkeys`: links `coldkey` to your account. The coldkey signs the link
   * text for `account` (default: your account's id, read from `GET /v1/account`) and this
   * client's `receiver`. `created` is false when it was linked to you already.
   */
  async linkColdkey(
    link: { coldkey: KeypairInput; nonce?: string; account?: string; gatewayHotkey?: string },
    options?: CallOptions,
  ): Promise<ColdkeyLink & { created: boolean }> {
    const gateway = link.gatewayHotkey ?? this.options.receiver;
    if (!gateway) throw new TypeError("linkColdkey: the gateway's hotkey is needed (`receiver` or `gatewayHotkey`)");
    const account = link.account ?? (await this.account(options)).id;
    const coldkey = await resolveSigner(link.coldkey);
    const nonce = link.nonce ?? `sdk-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
    const body = await coldkeyLinkRequest(coldkey, account, gateway, nonce);
    const response = await this.send({
      method: "POST",
      path: "/v1/account/coldkeys",
      body,
      auth: "caller",
      idempotent: false,
      call: options,
    });
    const created = response.status === 201;
    return { ...((await this.json(response)) as ColdkeyLink), created };
  }

  // ------------------------------------------------------------------------------------------
  // Transport
  // ------------------------------------------------------------------------------------------

  private signer(): Promise<ResolvedSigner> {
    if (!this.options.keypair) throw new TypeError("this client has no keypair");
    this.signerPromise ??= resolveSigner(this.options.keypair);
    return this.signerPromise;
  }

  private async getJson(path: string, auth: Auth, call?: CallOptions): Promise<unknown> {
    const response = await this.send({ method: "GET", path, auth, idempotent: true, call });
    return this.json(response);
  }

  private async json(response: Response): Promise<unknown> {
    return parseJson(await response.text());
  }

  private sessionsOn(): boolean {
    return this.signed && this.options.session !== false;
  }

  /** The credential headers of one attempt (each attempt signs anew: nonces are single-use). */
  private async credentials(send: Send, bodyBytes: Uint8Array, path: string): Promise<Record<string, string>> {
    if (send.auth === "none") return {};
    if (send.auth === "session") {
      return btauthHeaders(await this.signer(), {
        method: send.method,
        path,
        body: bodyBytes,
        receiver: this.options.receiver!,
      });
    }
    if (this.options.token) return { Authorization: `Bearer ${this.options.token}` };
    if (!this.signed) return {};
    if (this.sessionsOn()) return { Authorization: `Bearer ${await this.sessionToken()}` };
    const signer = await this.signer();
    if (this.options.scheme === "epistula") {
      return epistulaHeaders(signer, { body: bodyBytes, receiver: this.options.receiver! });
    }
    return btauthHeaders(signer, {
      method: send.method,
      path,
      body: bodyBytes,
      receiver: this.options.receiver!,
    });
  }

  private retriesFor(send: Send): number {
    const asked = send.call?.retry;
    const max = this.options.maxRetries ?? 2;
    if (typeof asked === "number") return Math.max(0, Math.floor(asked));
    if (asked === false) return 0;
    if (asked === true) return max;
    return send.idempotent || this.options.retryNonIdempotent ? max : 0;
  }

  /** Sends with retries; resolves with a 2xx response, throws {@link ApiError} otherwise. */
  private async send(send: Send): Promise<Response> {
    const url = this.baseUrl + send.path;
    // Signatures cover the path and query exactly as the gateway sees them.
    const signedPath = new URL(url).pathname + new URL(url).search;
    const bodyText = send.body === undefined ? undefined : JSON.stringify(send.body);
    const bodyBytes = bodyText === undefined ? new Uint8Array() : stringToU8a(bodyText);
    const retries = this.retriesFor(send);
    const maxWait = this.options.maxRetryWaitMs ?? 60_000;
    let renewedSession = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = {
        Accept: send.accept ?? "application/json",
        ...this.options.headers,
        ...(await this.credentials(send, bodyBytes, signedPath)),
      };
      if (bodyText !== undefined) headers["Content-Type"] = "application/json";
      if (send.call?.requestId) headers["X-Request-Id"] = send.call.requestId;
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method: send.method,
          headers,
          body: bodyText ?? null, // UTF-8, the bytes signed above
          signal: send.call?.signal ?? null,
        });
      } catch (error) {
        if (send.call?.signal?.aborted || !send.idempotent || attempt >= retries) throw error;
        const delayMs = backoff(attempt);
        this.options.onRetry?.({
          attempt: attempt + 1, method: send.method, path: send.path,
          status: 0, code: undefined, retryAfter: undefined, delayMs,
        });
        await sleep(delayMs, send.call?.signal);
        continue;
      }
      if (response.ok) return response;
      const error = await errorFromResponse(response);
      // A session token the gateway no longer takes (expired early, revoked, a restart with a
      // new secret): sign a new session once and send again; the refusal did nothing.
      if (
        response.status === 401 && !renewedSession && this.options.token === undefined &&
        this.sessionsOn() && send.auth === "caller" && String(error.code).startsWith("token_")
      ) {
        renewedSession = true;
        this.sessionState = undefined;
        attempt--;
        continue;
      }
      if ((response.status === 429 || response.status === 503) && attempt < retries) {
        const delayMs = error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff(attempt);
        if (delayMs <= maxWait) {
          this.options.onRetry?.({
            attempt: attempt + 1, method: send.method, path: send.path, status: response.status,
            code: String(error.code), retryAfter: error.retryAfter, delayMs,
          });
          await sleep(delayMs, send.call?.signal);
          continue;
        }
      }
      throw error;
    }
  }

  private async exchange(call?: CallOptions): Promise<Session> {
    const obtainedAtMs = Date.now();
    const response = await this.send({
      method: "POST",
      path: "/v1/auth/session",
      auth: "session",
      // A session is a read of a new token: retrying a refused exchange changes nothing.
      idempotent: true,
      call: call ? { signal: call.signal, requestId: call.requestId } : undefined,
    });
    const session = (await this.json(response)) as Session;
    const expiresAtMs = Date.parse(session.expires_at);
    if (this.sessionsOn() && !Number.isNaN(expiresAtMs)) {
      this.sessionState = { token: session.token, expiresAtMs, obtainedAtMs };
    }
    return session;
  }

  private sessionMargin(state: { expiresAtMs: number; obtainedAtMs: number }): number {
    if (this.options.sessionMarginMs !== undefined) return this.options.sessionMarginMs;
    return Math.min(DEFAULT_SESSION_MARGIN_MS, (state.expiresAtMs - state.obtainedAtMs) / 2);
  }

  /** The current session token, signing a new session when none is good for long enough. */
  private async sessionToken(): Promise<string> {
    const state = this.sessionState;
    if (state && Date.now() < state.expiresAtMs - this.sessionMargin(state)) return state.token;
    // Concurrent calls share one exchange, so it takes no caller's signal: one caller giving
    // up must not fail the others.
    this.sessionInFlight ??= this.exchange()
      .then((s) => s.token)
      .finally(() => {
        this.sessionInFlight = undefined;
      });
    return this.sessionInFlight;
  }
}

/** One event of {@link Client.reasonStream}. */
export type ReasonEvent =
  | { type: "reasoning"; delta: string }
  | { type: "output"; delta: string }
  | { type: "done"; result: ReasonDone }
  | { type: "error"; error: ApiError };

/** The stream {@link Client.reasonStream} returns; `result` is set once `done` arrived. */
export class ReasonStream extends EventStream<ReasonEvent> {
  /** The `done` event's result, once it arrived. */
  result: ReasonDone | undefined;
}

function reasonStep(event: EventSourceMessage, stream: EventStream<ReasonEvent>): Step<ReasonEvent> {
  switch (event.event) {
    case "reasoning":
    case "output": {
      const data = parseJson(event.data) as { delta: string };
      return { value: { type: event.event, delta: data.delta } };
    }
    case "done": {
      const data = parseJson(event.data) as Omit<ReasonDone, "requestId" | "rateLimit">;
      const result: ReasonDone = { ...data, requestId: stream.requestId, rateLimit: stream.rateLimit };
      (stream as ReasonStream).result = result;
      return { value: { type: "done", result }, end: true };
    }
    case "error": {
      const error = fromProblem(parseJson(event.data), { status: 0, requestId: stream.requestId });
      return { value: { type: "error", error }, end: true };
    }
    default:
      return {};
  }
}

function chatStep(event: EventSourceMessage, stream: EventStream<ChatCompletionChunk>): Step<ChatCompletionChunk> {
  if (event.data === "[DONE]") return { end: true };
  const data = parseJson(event.data) as Record<string, unknown>;
  if (data.error) throw fromProblem(data, { status: 0, requestId: stream.requestId });
  return { value: data as ChatCompletionChunk };
}

function meta(response: Response) {
  return {
    requestId: response.headers.get("x-request-id") ?? undefined,
    rateLimit: parseRateLimit(response.headers),
  };
}

function withRange(path: string, range: DayRange): string {
  const query = new URLSearchParams();
  if (range.from) query.set("from", range.from);
  if (range.to) query.set("to", range.to);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** Jittered exponential backoff when the gateway named no `Retry-After`. */
function backoff(attempt: number): number {
  return Math.round(250 * 2 ** attempt * (1 + Math.random() / 2));
}

