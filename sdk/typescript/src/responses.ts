/**
 * `POST /v1/responses` (docs/API.md §5.2, the stateless subset of Open Responses): the
 * `response` object, its streamed events, and their conversion from server-sent events.
 * The document types the request only (the answer is the specification's object), so the
 * answer's shapes are written here.
 */
import type { EventSourceMessage } from "eventsource-parser";
import { fromProblem, type ApiError } from "./errors.js";
import type { components } from "./generated/openapi.js";
import { parseJson } from "./json.js";
import type { Cost } from "./money.js";
import { EventStream, type Step } from "./stream.js";
import type { ResponseMeta } from "./types.js";

/**
 * `POST /v1/responses` body (without `stream`: pick `responses` or `responsesStream`);
 * `model` defaults to `affine-winner`.
 */
export type ResponsesRequest = Omit<components["schemas"]["ResponsesRequest"], "stream" | "model"> & {
  model?: string | undefined;
};

/** A text part: `reasoning_text`, `summary_text` or `output_text`. */
export interface ResponseTextPart {
  type: "reasoning_text" | "summary_text" | "output_text" | (string & {});
  text: string;
  [field: string]: unknown;
}

/** The model's reasoning: `content` parts, or `summary` parts when a summary was asked for. */
export interface ResponseReasoningItem {
  type: "reasoning";
  id: string;
  status?: string;
  summary: ResponseTextPart[];
  content?: ResponseTextPart[];
}

/** The answer. */
export interface ResponseMessageItem {
  type: "message";
  id: string;
  role: "assistant";
  status?: string;
  content: ResponseTextPart[];
}

/** One item of `output`: the reasoning (when there is one), then the message. */
export type ResponseOutputItem = ResponseReasoningItem | ResponseMessageItem;

/** Tokens of a response; `output_tokens` includes the reasoning tokens. */
export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/**
 * The `response` object. `status` is `completed`, `incomplete` (see `incomplete_details`),
 * `in_progress` or `failed` (see `error`); `usage` and `cost` are set once the answer ended.
 * The request's settings are echoed (`instructions`, `max_output_tokens`, `reasoning`, …).
 */
export interface ResponseObject {
  id: string;
  object: "response";
  created_at: number;
  status: "completed" | "incomplete" | "in_progress" | "failed" | (string & {});
  model: string;
  output: ResponseOutputItem[];
  usage: ResponseUsage | null;
  /** What it cost: `rao` a bigint, `tao` its exact decimal text. */
  cost?: Cost;
  incomplete_details: { reason: string } | null;
  error: { code: string; message: string } | null;
  metadata: Record<string, string>;
  [field: string]: unknown;
}

/** A whole answer of `POST /v1/responses`. */
export type ResponsesResult = ResponseObject & ResponseMeta;

/** The answer's text: the message items' `output_text` parts. */
export function outputText(response: ResponseObject): string {
  return response.output
    .filter((item): item is ResponseMessageItem => item.type === "message")
    .flatMap((item) => item.content.map((part) => part.text))
    .join("");
}

/** The reasoning (content or summary parts), or `undefined` without a reasoning item. */
export function reasoningText(response: ResponseObject): string | undefined {
  const item = response.output.find((i): i is ResponseReasoningItem => i.type === "reasoning");
  if (!item) return undefined;
  return [...(item.content ?? []), ...item.summary].map((part) => part.text).join("");
}

interface Numbered {
  sequence_number: number;
}

/** Where a part sits: `content_index`, or `summary_index` for summary parts. */
interface PartPlace extends Numbered {
  item_id: string;
  output_index: number;
  content_index?: number;
  summary_index?: number;
}

/** The terminal events: the stream ends after one of them. */
export type ResponseTerminalType = "response.completed" | "response.incomplete" | "response.failed";

/** One event of {@link Client.responsesStream}, named after its `type`. */
export type ResponseEvent =
  | (Numbered & {
      type: "response.created" | "response.in_progress" | ResponseTerminalType;
      response: ResponseObject;
    })
  | (Numbered & {
      type: "response.output_item.added" | "response.output_item.done";
      output_index: number;
      item: ResponseOutputItem;
    })
  | (PartPlace & {
      type:
        | "response.content_part.added"
        | "response.content_part.done"
        | "response.reasoning_summary_part.added"
        | "response.reasoning_summary_part.done";
      part: ResponseTextPart;
    })
  | (PartPlace & {
      type: "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" | "response.output_text.delta";
      delta: string;
    })
  | (PartPlace & {
      type: "response.reasoning_text.done" | "response.reasoning_summary_text.done" | "response.output_text.done";
      text: string;
    })
  /** The answer failed after it began; `response.failed` follows. */
  | (Numbered & { type: "error"; error: ApiError });

const KNOWN = new Set<string>([
  "response.created",
  "response.in_progress",
  "response.completed",
  "response.incomplete",
  "response.failed",
  "response.output_item.added",
  "response.output_item.done",
  "response.content_part.added",
  "response.content_part.done",
  "response.reasoning_summary_part.added",
  "response.reasoning_summary_part.done",
  "response.reasoning_text.delta",
  "response.reasoning_text.done",
  "response.reasoning_summary_text.delta",
  "response.reasoning_summary_text.done",
  "response.output_text.delta",
  "response.output_text.done",
]);
const TERMINAL = new Set<string>(["response.completed", "response.incomplete", "response.failed"]);

/** The stream {@link Client.responsesStream} returns; `response` is set once it ended. */
export class ResponseStream extends EventStream<ResponseEvent> {
  /** The terminal event's object (completed, incomplete or failed), once it arrived. */
  response: ResponsesResult | undefined;
}

/** @internal */
export function responseStep(event: EventSourceMessage, stream: EventStream<ResponseEvent>): Step<ResponseEvent> {
  const data = parseJson(event.data) as Record<string, unknown>;
  // The data names its type too, should a proxy drop the `event:` lines.
  const type = event.event ?? (typeof data.type === "string" ? data.type : "");
  const sequence_number = typeof data.sequence_number === "number" ? data.sequence_number : 0;
  if (type === "error") {
    // The event is an OpenAI error object; it carries no status: 502, a failure upstream.
    const error = fromProblem(
      { error: { code: data.code, message: data.message } },
      { status: 502, requestId: stream.requestId },
    );
    return { value: { type: "error", error, sequence_number } };
  }
  if (!KNOWN.has(type)) return {};
  const value = { ...data, type } as ResponseEvent;
  if (TERMINAL.has(type) && "response" in value) {
    (stream as ResponseStream).response = {
      ...value.response,
      requestId: stream.requestId,
      rateLimit: stream.rateLimit,
    };
    return { value, end: true };
  }
  return { value };
}
