// `POST /v1/responses` against a live gateway on the built-in simulator: whole and streamed,
// summaries, refused stateful fields, signed callers, and a broken stream from a scripted fetch.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ApiError,
  Client,
  outputText,
  reasoningText,
  type ResponseEvent,
  type ResponseObject,
  type ResponsesRequest,
} from "@affine/reason";
import { BASE_URL, GATEWAY_HOTKEY, RUN, account } from "./fixtures.js";

async function collect(stream: AsyncIterable<ResponseEvent>): Promise<ResponseEvent[]> {
  const events: ResponseEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

function deltas(events: ResponseEvent[], type: ResponseEvent["type"]): string {
  return events.map((e) => (e.type === type && "delta" in e ? e.delta : "")).join("");
}

function checkWhole(r: ResponseObject) {
  // Typed exactly: this does not compile if rao were a JS number.
  const rao: bigint | undefined = r.cost?.rao;
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.match(r.id, /^resp_/);
  assert.deepEqual(r.output.map((i) => i.type), ["reasoning", "message"]);
  const reasoning = r.output[0]!;
  assert.ok(reasoning.type === "reasoning" && reasoning.content?.[0]?.type === "reasoning_text");
  assert.ok(reasoningText(r));
  assert.ok(outputText(r).trim());
  assert.ok(r.usage);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  assert.ok(r.usage.output_tokens_details.reasoning_tokens <= r.usage.output_tokens);
  assert.equal(typeof rao, "bigint");
  assert.ok(rao! > 0n, "the plan is priced");
  assert.match(r.cost!.tao, /^\d+\.\d{9}$/);
}

/** `priced`: the caller's plan charges (the public plan of unregistered hotkeys is free). */
function checkStream(events: ResponseEvent[], priced = true): ResponseObject {
  const types = events.map((e) => e.type);
  assert.deepEqual(types.slice(0, 3), ["response.created", "response.in_progress", "response.output_item.added"]);
  assert.equal(types.at(-1), "response.completed");
  assert.equal(types.filter((t) => t === "response.completed").length, 1);
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  const last = events.at(-1)!;
  assert.ok(last.type === "response.completed");
  const reasoning = deltas(events, "response.reasoning_text.delta");
  const output = deltas(events, "response.output_text.delta");
  assert.ok(reasoning && output);
  assert.equal(reasoningText(last.response), reasoning);
  assert.equal(outputText(last.response), output);
  assert.ok(last.response.usage!.output_tokens > 0);
  assert.equal(typeof last.response.cost!.rao, "bigint");
  assert.ok(priced ? last.response.cost!.rao > 0n : last.response.cost!.rao >= 0n);
  return last.response;
}

describe("responses with a bearer token", async () => {
  const token = await account(BASE_URL, `ts-responses-${RUN}`, { billing: "postpaid", credit_limit_rao: 1_000_000_000_000 });
  const client = new Client({ baseUrl: BASE_URL, token });

  test("a whole response has reasoning, message, usage and cost, and echoes the settings", async () => {
    const r = await client.responses({
      input: [
        { role: "developer", content: "answer in one word" },
        { role: "user", content: [{ type: "input_text", text: "Is 61 prime?" }] },
      ],
      instructions: "be brief",
      max_output_tokens: 200,
      temperature: 0.3,
      top_p: 0.9,
      reasoning: { effort: "high" },
      metadata: { run: RUN },
    });
    checkWhole(r);
    assert.deepEqual(r.metadata, { run: RUN });
    assert.equal(r.max_output_tokens, 200);
    assert.deepEqual(r.reasoning, { effort: "high", summary: null });
    assert.ok(r.requestId);
    assert.ok(r.rateLimit?.rpm);
  });

  test("a stream's deltas make the completed response's texts", async () => {
    const stream = client.responsesStream({ input: "Is 61 prime?", max_output_tokens: 200 });
    const done = checkStream(await collect(stream));
    assert.ok(stream.requestId);
    assert.equal(stream.response?.id, done.id);
    assert.equal(stream.response?.requestId, stream.requestId);
    assert.ok(stream.rateLimit?.tpm);
  });

  test("with a summary asked for, the reasoning streams as summary text", async () => {
    const events = await collect(client.responsesStream({ input: "2+2?", reasoning: { summary: "auto" } }));
    const summary = deltas(events, "response.reasoning_summary_text.delta");
    assert.ok(summary);
    assert.equal(deltas(events, "response.reasoning_text.delta"), "");
    assert.ok(events.some((e) => e.type === "response.reasoning_summary_part.added"));
    const last = events.at(-1)!;
    assert.ok(last.type === "response.completed");
    assert.equal(reasoningText(last.response), summary);
  });

  for (const [field, value] of [
    ["previous_response_id", "resp_abc"],
    ["store", true],
    ["tools", [{ type: "function", name: "f", parameters: {} }]],
  ] as const) {
    test(`\`${field}\` is refused with unsupported_parameter, whole and streamed`, async () => {
      // Not in the request type: the stateless subset has no such field.
      const request = { input: "x", [field]: value } as ResponsesRequest;
      await assert.rejects(client.responses(request), (e: unknown) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.status, 400);
        assert.equal(e.code, "unsupported_parameter");
        assert.ok(e.message.includes(field), e.message);
        assert.ok(e.requestId);
        return true;
      });
      await assert.rejects(collect(client.responsesStream(request)), (e: unknown) => {
        assert.ok(e instanceof ApiError && e.code === "unsupported_parameter");
        return true;
      });
    });
  }
});

describe("responses signed with a hotkey", () => {
  const cases = [
    ["btauth/1 sr25519", { keypair: `//sdk-ts-resp-sr-${RUN}`, session: false }],
    ["btauth/1 ed25519", { keypair: { uri: `//sdk-ts-resp-ed-${RUN}`, type: "ed25519" as const }, session: false }],
    ["Epistula v2", { keypair: `//sdk-ts-resp-ep-${RUN}`, scheme: "epistula" as const, session: false }],
    ["an automatic session", { keypair: `//sdk-ts-resp-session-${RUN}` }],
  ] as const;
  for (const [name, options] of cases) {
    test(name, async () => {
      const client = new Client({ baseUrl: BASE_URL, receiver: GATEWAY_HOTKEY, ...options });
      const r = await client.responses({ input: "2+2?", max_output_tokens: 64 });
      assert.ok(outputText(r));
      checkStream(await collect(client.responsesStream({ input: "2+2?", max_output_tokens: 200 })), false);
    });
  }
});

/** A `fetch` that answers every request with this event stream. */
function scripted(sse: string): typeof fetch {
  return async (_input, init) => {
    const body = JSON.parse(String(init?.body)) as Record<string, unknown>;
    assert.equal(body.model, "affine-winner");
    assert.equal(body.stream, true);
    return new Response(sse, { headers: { "content-type": "text/event-stream", "x-request-id": "r9" } });
  };
}

function sse(events: Array<Record<string, unknown>>): string {
  return events
    .map((e, i) => `event: ${String(e.type)}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`)
    .join("");
}

const object = (status: string, extra: Record<string, unknown> = {}) => ({
  id: "resp_1", object: "response", created_at: 1, status, model: "m", output: [], metadata: {}, ...extra,
});

test("a broken stream yields the error as an ApiError, then response.failed, then ends", async () => {
  const body = sse([
    { type: "response.created", response: object("in_progress") },
    { type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta: "4" },
    { type: "response.novelty", x: 1 },
    { type: "error", code: "upstream_error", message: "the provider broke", param: null },
    { type: "response.failed", response: object("failed", { error: { code: "upstream_error", message: "broke" } }) },
    { type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta: "late" },
  ]);
  const client = new Client({ baseUrl: "http://gw.test", token: "t", fetch: scripted(body) });
  const stream = client.responsesStream({ input: "x" });
  const events = await collect(stream);
  // The unknown event is skipped, and nothing after the terminal event is read.
  assert.deepEqual(events.map((e) => e.type), ["response.created", "response.output_text.delta", "error", "response.failed"]);
  const error = events[2]!;
  assert.ok(error.type === "error");
  assert.ok(error.error instanceof ApiError);
  assert.equal(error.error.code, "upstream_error");
  assert.equal(error.error.status, 502);
  assert.equal(error.error.requestId, "r9");
  assert.match(error.error.message, /the provider broke/);
  assert.equal(stream.response?.status, "failed");
  assert.equal(stream.response?.error?.code, "upstream_error");
});
