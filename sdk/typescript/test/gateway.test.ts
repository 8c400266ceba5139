// The SDK against a live gateway on the built-in simulator: every credential, whole and
// streamed answers, typed errors, retries, sessions, and the read endpoints.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError, Client, type ReasonEvent, type RetryInfo } from "@affine/reason";
import { BASE_URL, GATEWAY_HOTKEY, RUN, account, admin, today } from "./fixtures.js";

/** A `fetch` that records what it sent. */
function recording() {
  const calls: Array<{ method: string; path: string; headers: Headers }> = [];
  const wrapped: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    calls.push({ method: init?.method ?? "GET", path: url.pathname, headers: new Headers(init?.headers) });
    return fetch(input, init);
  };
  return { calls, fetch: wrapped };
}

/** Spends a limited account's requests until one is refused with 429. */
async function spendUntilRefused(client: Client): Promise<ApiError> {
  for (let i = 0; i < 200; i++) {
    const error = await client.reason({ input: "x", max_tokens: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (error instanceof ApiError && error.status === 429) return error;
    if (error) throw error;
  }
  throw new Error("never refused");
}

async function collect(stream: AsyncIterable<ReasonEvent>): Promise<ReasonEvent[]> {
  const events: ReasonEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

function checkWhole(result: Awaited<ReturnType<Client["reason"]>>) {
  // Typed exactly too: these lines do not compile if rao were typed as a JS number.
  const rao: bigint = result.cost.rao;
  const tao: string = result.cost.tao;
  void [rao, tao];
  assert.ok(result.output.length > 0);
  assert.equal(result.object, "reason.result");
  assert.equal(typeof result.cost.rao, "bigint");
  assert.match(result.cost.tao, /^\d+\.\d{9}$/);
  assert.ok(result.usage.total_tokens > 0);
  assert.ok(result.model.id.length > 0);
  assert.ok(result.requestId);
}

function checkStream(events: ReasonEvent[]) {
  const kinds = events.map((e) => e.type);
  assert.equal(kinds.at(-1), "done");
  assert.equal(kinds.filter((k) => k === "done").length, 1);
  assert.ok(kinds.includes("output"));
  const done = events.at(-1)!;
  assert.equal(done.type, "done");
  if (done.type !== "done") return;
  assert.equal(typeof done.result.cost.rao, "bigint");
  assert.ok(done.result.usage.output_tokens > 0);
  assert.equal("output" in done.result, false, "done carries the result without its texts");
}

describe("bearer tokens", async () => {
  const token = await account(BASE_URL, `ts-bearer-${RUN}`, { billing: "postpaid", credit_limit_rao: 1_000_000_000_000 });
  const client = new Client({ baseUrl: BASE_URL, token });

  test("a whole answer exposes cost in rao (bigint) and TAO (string) and the RateLimit headers", async () => {
    const result = await client.reason({ input: "2+2?", max_tokens: 64 });
    checkWhole(result);
    assert.ok(result.cost.rao > 0n, "the enterprise plan is priced");
    assert.ok(result.rateLimit?.rpm, "RateLimit headers parsed");
    assert.equal(result.rateLimit!.rpm!.quota, 1200);
    assert.equal(typeof result.rateLimit!.rpm!.remaining, "number");
  });

  test("a stream yields reasoning and output deltas and one done with usage and cost", async () => {
    const stream = client.reasonStream({ input: "2+2?", max_tokens: 64 });
    const events = await collect(stream);
    checkStream(events);
    assert.ok(events.some((e) => e.type === "reasoning"));
    assert.ok(stream.rateLimit?.rpm);
    assert.ok(stream.result && stream.result.cost.rao > 0n);
  });

  test("the stream's deltas concatenate to what the whole answer says", async () => {
    const events = await collect(client.reasonStream({ input: "same", seed: 3, max_tokens: 64 }));
    const output = events.flatMap((e) => (e.type === "output" ? [e.delta] : [])).join("");
    assert.ok(output.length > 0);
  });

  test("chat completions, whole and streamed, with the cost header", async () => {
    const whole = await client.chatCompletions({ model: "affine-winner", messages: [{ role: "user", content: "hi" }], max_tokens: 32 });
    assert.ok(whole.choices[0]?.message.content);
    assert.ok(whole.cost && whole.cost.rao > 0n);
    assert.ok(whole.rateLimit?.rpm);
    let chunks = 0;
    let text = "";
    for await (const chunk of client.chatCompletionsStream({ model: "affine-winner", messages: [{ role: "user", content: "hi" }], max_tokens: 32 })) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? "";
    }
    assert.ok(chunks > 1);
    assert.ok(text.length > 0);
  });

  test("models, winner, account, usage and stats", async () => {
    const models = await client.models();
    const ids = models.data.map((m) => m.id);
    assert.ok(ids.includes("affine-winner"));
    const priced = models.data.find((m) => m.price);
    assert.equal(typeof priced?.price?.input.rao, "bigint");
    const winner = await client.winner();
    assert.ok(winner.model.id);
    const me = await client.account();
    assert.equal(me.id, `ts-bearer-${RUN}`);
    assert.equal(typeof me.balance_rao, "bigint");
    const balance: bigint = me.balance_rao;
    const held: bigint = me.holds_rao;
    assert.ok(balance <= 0n && held >= 0n, "postpaid: the answers so far were debited");
    assert.equal(me.billing, "postpaid");
    const usage = await client.usage({ from: today(), to: today() });
    assert.equal(usage.from, today());
    assert.equal(typeof usage.total.rao, "bigint");
    const stats = await client.stats({ from: today(), to: today() });
    assert.equal(stats.days.length, 1);
  });

  test("a refusal is an ApiError with status, code and request id", async () => {
    const error = await client.reason({ input: "x", max_tokens: 0 }).catch((e: unknown) => e);
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_request");
    assert.ok(error.requestId);
    // The OpenAI error shape of the chat route becomes the same typed error.
    const chat = await client.chatCompletions({ model: "no/such-model", messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    assert.ok(chat instanceof ApiError);
    assert.equal(chat.status, 404);
    assert.equal(chat.code, "not_found");
    assert.ok(chat.requestId);
    const bad = new Client({ baseUrl: BASE_URL, token: "not-a-token" });
    const refused = await bad.account().catch((e: unknown) => e);
    assert.ok(refused instanceof ApiError);
    assert.equal(refused.status, 401);
    assert.equal(refused.code, "token_invalid");
  });
});

describe("402 and 429", async () => {
  test("a prepaid account without balance gets 402 insufficient_balance, typed", async () => {
    const token = await account(BASE_URL, `ts-broke-${RUN}`, { billing: "prepaid" });
    const client = new Client({ baseUrl: BASE_URL, token });
    const error = await client.reason({ input: "hi" }).catch((e: unknown) => e);
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.status, 402);
    assert.equal(error.code, "insufficient_balance");
    assert.equal(error.retryAfter, undefined, "no Retry-After on a 402: waiting does not help");
    assert.ok(error.requestId);
    // A stream is refused the same way, before it starts.
    const streamed = await collect(client.reasonStream({ input: "hi" })).catch((e: unknown) => e);
    assert.ok(streamed instanceof ApiError);
    assert.equal(streamed.code, "insufficient_balance");
  });

  test("429 rate_limited with retry_after, then a retry that waits Retry-After and succeeds", async () => {
    const token = await account(BASE_URL, `ts-limited-${RUN}`, { plan: "sdk-limited", billing: "postpaid", credit_limit_rao: 1_000_000_000_000 });
    const retries: RetryInfo[] = [];
    const client = new Client({ baseUrl: BASE_URL, token, onRetry: (info) => retries.push(info) });
    // The plan allows 60 requests a minute, all at once: spend them (one comes back a second).
    const refused = await spendUntilRefused(client);
    assert.equal(refused.code, "rate_limited");
    assert.ok(refused.retryAfter !== undefined && refused.retryAfter >= 1, `retryAfter ${refused.retryAfter}`);
    assert.ok(refused.requestId);
    assert.equal(refused.rateLimit?.rpm?.remaining, 0);
    assert.equal(retries.length, 0, "reason is not retried unless asked");

    // Asked to retry: it waits what Retry-After says, then succeeds. (Should the machine stall
    // for a second here, the bucket refills and no retry happens: spend it again and retry.)
    for (let round = 0; round < 3 && retries.length === 0; round++) {
      if (round > 0) await spendUntilRefused(client);
      const started = performance.now();
      const result = await client.reason({ input: "x", max_tokens: 1 }, { retry: true });
      const elapsed = performance.now() - started;
      assert.ok(result.output !== undefined);
      if (retries.length === 0) continue;
      const first = retries[0]!;
      assert.equal(first.status, 429);
      assert.equal(first.code, "rate_limited");
      assert.ok(first.retryAfter !== undefined && first.retryAfter >= 1);
      assert.equal(first.delayMs, first.retryAfter * 1000);
      const waited = retries.reduce((sum, r) => sum + (r.retryAfter ?? 0) * 1000, 0);
      assert.ok(elapsed >= waited, `elapsed ${elapsed} ms < Retry-After total ${waited} ms`);
    }
    assert.ok(retries.length >= 1, "it retried");

    // A stream is refused before it starts, and retried (when asked) before it starts too.
    await spendUntilRefused(client);
    const refusedStream = await collect(client.reasonStream({ input: "x", max_tokens: 1 })).catch((e: unknown) => e);
    assert.ok(refusedStream instanceof ApiError);
    assert.equal(refusedStream.code, "rate_limited");
    // (The bucket may refill between the refusal and the next call: then spend it again.)
    const before = retries.length;
    for (let round = 0; round < 3 && retries.length === before; round++) {
      if (round > 0) await spendUntilRefused(client);
      const events = await collect(client.reasonStream({ input: "x", max_tokens: 1 }, { retry: true }));
      assert.equal(events.at(-1)?.type, "done");
    }
    assert.ok(retries.length > before, "the stream's request was retried before it started");
    assert.equal(retries.at(-1)?.status, 429);
  });
});

describe("signed requests", () => {
  test("btauth/1 with an sr25519 hotkey, every request signed (no session)", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-sr-${RUN}`, receiver: GATEWAY_HOTKEY, session: false, fetch });
    checkWhole(await client.reason({ input: "hi", max_tokens: 32 }));
    checkStream(await collect(client.reasonStream({ input: "hi", max_tokens: 32 })));
    const me = await client.account();
    assert.equal(me.id, await client.hotkey());
    assert.equal(calls.filter((c) => c.path === "/v1/auth/session").length, 0);
    for (const c of calls) {
      assert.equal(c.headers.get("authorization"), null);
      assert.ok(BigInt(c.headers.get("x-bittensor-nonce")!) > 2n ** 53n);
    }
  });

  test("btauth/1 with an ed25519 hotkey", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: { uri: `//sdk-ts-ed-${RUN}`, type: "ed25519" }, receiver: GATEWAY_HOTKEY, session: false, fetch });
    checkWhole(await client.reason({ input: "hi", max_tokens: 32 }));
    checkStream(await collect(client.reasonStream({ input: "hi", max_tokens: 32 })));
    assert.equal(calls[0]!.headers.get("x-bittensor-crypto"), "ed25519");
  });

  test("Epistula v2, every request signed", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-ep-${RUN}`, receiver: GATEWAY_HOTKEY, scheme: "epistula", session: false, fetch });
    checkWhole(await client.reason({ input: "hi", max_tokens: 32 }));
    checkStream(await collect(client.reasonStream({ input: "hi", max_tokens: 32 })));
    const usage = await client.usage({ from: today(), to: today() });
    assert.equal(usage.account, await client.hotkey());
    assert.ok(calls.every((c) => c.headers.get("epistula-version") === "2"));
  });

  test("a nonce above 2^53 signed by the SDK is accepted by the gateway exactly", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-nonce-${RUN}`, receiver: GATEWAY_HOTKEY, session: false, fetch });
    await client.account();
    const nonce = calls[0]!.headers.get("x-bittensor-nonce")!;
    const exact = BigInt(nonce);
    assert.ok(exact > 2n ** 53n);
    // The nonce is the clock in nanoseconds: a JS number could not carry it.
    assert.equal(exact.toString(), nonce);
    // The same signed headers again are a replay: the gateway read the very nonce signed.
    const replay = await globalThis.fetch(`${BASE_URL}/v1/account`, { headers: calls[0]!.headers });
    assert.equal(replay.status, 401);
    assert.equal((await replay.json()).code, "replayed_request");
    // One nanosecond more is a different nonce, which a float would have rounded away.
    const headers = new Headers(calls[0]!.headers);
    headers.set("x-bittensor-nonce", (exact + 1n).toString());
    const tampered = await globalThis.fetch(`${BASE_URL}/v1/account`, { headers });
    assert.equal((await tampered.json()).code, "bad_signature");
  });
});

describe("sessions", () => {
  test("a signed client signs once at /v1/auth/session and reuses the token", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-session-${RUN}`, receiver: GATEWAY_HOTKEY, fetch });
    checkWhole(await client.reason({ input: "hi", max_tokens: 32 }));
    checkStream(await collect(client.reasonStream({ input: "hi", max_tokens: 32 })));
    await Promise.all([client.account(), client.models(), client.usage()]);
    const sessions = calls.filter((c) => c.path === "/v1/auth/session");
    assert.equal(sessions.length, 1);
    assert.ok(sessions[0]!.headers.get("x-bittensor-signature"));
    const others = calls.filter((c) => c.path !== "/v1/auth/session");
    assert.equal(others.length, 5);
    for (const c of others) {
      assert.match(c.headers.get("authorization") ?? "", /^Bearer ey/);
      assert.equal(c.headers.get("x-bittensor-signature"), null);
    }
  });

  test("concurrent first calls share one session exchange", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-concurrent-${RUN}`, receiver: GATEWAY_HOTKEY, fetch });
    const [a, b] = await Promise.all([client.account(), client.account(), client.models()]);
    assert.equal(a.id, b.id);
    assert.equal(calls.filter((c) => c.path === "/v1/auth/session").length, 1);
  });

  test("the session is renewed when it is within the margin of its expiry", async () => {
    const { calls, fetch } = recording();
    // A margin longer than the session's life (15 min): every call finds it about to expire.
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-renew-${RUN}`, receiver: GATEWAY_HOTKEY, sessionMarginMs: 3_600_000, fetch });
    await client.account();
    await client.account();
    assert.equal(calls.filter((c) => c.path === "/v1/auth/session").length, 2);
  });

  test("an Epistula client still signs its session with btauth/1", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-epsession-${RUN}`, receiver: GATEWAY_HOTKEY, scheme: "epistula", fetch });
    const session = await client.createSession();
    assert.ok(session.token);
    assert.ok(Date.parse(session.expires_at) > Date.now());
    await client.account();
    const exchange = calls.find((c) => c.path === "/v1/auth/session")!;
    assert.equal(exchange.headers.get("x-bittensor-version"), "1");
    assert.equal(exchange.headers.get("epistula-version"), null);
    assert.equal(calls.filter((c) => c.path === "/v1/auth/session").length, 1, "createSession's token is reused");
  });

  test("a revoked session token is replaced by a new session once", async () => {
    const { calls, fetch } = recording();
    const client = new Client({ baseUrl: BASE_URL, keypair: `//sdk-ts-revoked-${RUN}`, receiver: GATEWAY_HOTKEY, fetch });
    await client.account();
    const token = calls.find((c) => c.path === "/v1/account")!.headers.get("authorization")!.slice(7);
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
    await admin(BASE_URL, "POST", "/admin/v1/tokens/revoke", { jti: claims.jti, exp: claims.exp });
    await client.account();
    assert.equal(calls.filter((c) => c.path === "/v1/auth/session").length, 2);
  });
});

describe("coldkey linking", () => {
  test("links a coldkey to the caller's account; the same link again is not new", async () => {
    const token = await account(BASE_URL, `ts-coldkey-${RUN}`, { billing: "postpaid", credit_limit_rao: 1_000_000_000 });
    const client = new Client({ baseUrl: BASE_URL, token, receiver: GATEWAY_HOTKEY });
    const coldkey = `//sdk-ts-cold-${RUN}`;
    const link = await client.linkColdkey({ coldkey });
    assert.equal(link.account, `ts-coldkey-${RUN}`);
    assert.equal(link.created, true);
    const again = await client.linkColdkey({ coldkey });
    assert.equal(again.created, false);
    assert.equal(again.coldkey, link.coldkey);
    // A nonce is good for one link of a coldkey, ever: after an unlink it cannot relink.
    const other = `//sdk-ts-cold2-${RUN}`;
    const nonce = `n-${RUN}`;
    const first = await client.linkColdkey({ coldkey: other, nonce });
    assert.equal(first.created, true);
    await admin(BASE_URL, "DELETE", `/admin/v1/accounts/ts-coldkey-${RUN}/coldkeys/${first.coldkey}`, undefined, [204]);
    const reused = await client.linkColdkey({ coldkey: other, nonce }).catch((e: unknown) => e);
    assert.ok(reused instanceof ApiError);
    assert.equal(reused.status, 400);
    assert.equal(reused.code, "invalid_request");
  });
});
