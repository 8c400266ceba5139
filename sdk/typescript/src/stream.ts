/**
 * Server-sent events as native async iteration. The request starts when iteration does; a
 * `break`, a `return`, a thrown error or the caller's `AbortSignal` aborts the fetch, which
 * closes the connection (the gateway then settles the request as `client_closed`).
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { ApiError } from "./errors.js";
import { parseRateLimit, type RateLimit } from "./ratelimit.js";

/** What a converter makes of one SSE event. */
export interface Step<T> {
  /** The value to yield, if any (unknown events yield nothing: new event types are additive). */
  value?: T;
  /** This event ends the stream. */
  end?: boolean;
}

/** Opens the HTTP response of a stream (retries, if any, happen inside, before it starts). */
export type Opener = (signal: AbortSignal) => Promise<Response>;

/** A streamed answer: iterate it once with `for await`. */
export class EventStream<T> implements AsyncIterable<T> {
  /** `X-Request-Id`, once the answer began. */
  requestId: string | undefined;
  /** The parsed rate-limit headers, once the answer began. */
  rateLimit: RateLimit | undefined;
  private controller: AbortController | undefined;
  private iterated = false;

  /** @internal */
  constructor(
    private readonly open: Opener,
    private readonly convert: (event: EventSourceMessage, stream: EventStream<T>) => Step<T>,
    private readonly signal?: AbortSignal,
  ) {}

  /** Stops the stream and closes its connection (also safe before or after iterating). */
  close(): void {
    this.controller?.abort(new DOMException("stream closed by the caller", "AbortError"));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new TypeError("a stream can be iterated once");
    this.iterated = true;
    const controller = new AbortController();
    this.controller = controller;
    const onAbort = () => controller.abort(this.signal?.reason);
    if (this.signal?.aborted) onAbort();
    this.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const response = await this.open(controller.signal);
      this.requestId = response.headers.get("x-request-id") ?? undefined;
      this.rateLimit = parseRateLimit(response.headers);
      if (!response.body) throw new TypeError("the stream's response has no body");
      const queue: EventSourceMessage[] = [];
      const parser = createParser({ onEvent: (event) => queue.push(event) });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
        while (queue.length > 0) {
          const step = this.convert(queue.shift()!, this);
          if (step.value !== undefined) yield step.value;
          if (step.end) return;
        }
      }
      throw new ApiError({
        status: response.status,
        code: "stream_incomplete",
        message: "stream_incomplete: the connection ended before the stream's last event",
        requestId: this.requestId,
      });
    } finally {
      this.signal?.removeEventListener("abort", onAbort);
      // Closes the connection when the caller stopped early; a no-op after a complete read.
      controller.abort(new DOMException("stream finished", "AbortError"));
    }
  }
}
