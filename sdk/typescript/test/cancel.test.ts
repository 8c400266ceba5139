// A stream the caller abandons closes its connection, and the gateway settles it as
// `client_closed`. This gateway's upstream streams 20 tokens a second, so the answer is still
// being produced when the caller leaves.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@affine/reason";
import { PACED_URL, RUN, account, eventually, thisMonth } from "./fixtures.js";

async function statusOf(id: string): Promise<Record<string, unknown> | undefined> {
  const response = await fetch(`${PACED_URL}/admin/v1/usage/export?month=${thisMonth()}&format=jsonl`, {
    headers: { authorization: `Bearer ${process.env.AGW_SDK_ADMIN_TOKEN}` },
  });
  const lines = (await response.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return lines.find((e) => e.account === id);
}

test("break out of a stream: the connection closes and the request settles as client_closed", async () => {
  const id = `ts-cancel-${RUN}`;
  const token = await account(PACED_URL, id, { billing: "postpaid", credit_limit_rao: 1_000_000_000_000 });
  const client = new Client({ baseUrl: PACED_URL, token });
  const started = performance.now();
  let seen = 0;
  for await (const event of client.reasonStream({ input: "count slowly", max_tokens: 400 })) {
    assert.ok(event.type === "reasoning" || event.type === "output", event.type);
    if (++seen === 2) break;
  }
  // 40 tokens at 20 a second take two seconds: leaving after two deltas is long before that.
  assert.ok(performance.now() - started < 1_500);
  const event = await eventually("a usage event for the abandoned stream", 10_000, () => statusOf(id));
  assert.equal(event.status, "client_closed");
  assert.equal(event.estimated, true);
  assert.ok(Number(event.output_tokens) < 40, "charged only what was produced");
});

test("an AbortSignal stops a stream the same way", async () => {
  const id = `ts-abort-${RUN}`;
  const token = await account(PACED_URL, id, { billing: "postpaid", credit_limit_rao: 1_000_000_000_000 });
  const client = new Client({ baseUrl: PACED_URL, token });
  const controller = new AbortController();
  const error = await (async () => {
    for await (const event of client.reasonStream({ input: "count slowly", max_tokens: 400 }, { signal: controller.signal })) {
      assert.notEqual(event.type, "done");
      controller.abort();
    }
  })().catch((e: unknown) => e);
  assert.equal((error as Error).name, "AbortError");
  const event = await eventually("a usage event for the aborted stream", 10_000, () => statusOf(id));
  assert.equal(event.status, "client_closed");
});
