// Pieces with no gateway: exact money, rate-limit headers, the generated types' drift.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { parseJson, parseRateLimit, parseRetryAfter, raoToTao, taoToRao } from "@affine/reason";
import { repoRoot } from "./repo.js";

test("rao parses as bigint exactly, beyond 2^53; tao stays decimal text", () => {
  const parsed = parseJson(
    '{"balance_rao": 9223372036854775807, "cost": {"rao": 84, "tao": "0.000000084"}, "price": {"rao": 540000, "tao": 0.00054}, "n": 7}',
  ) as any;
  assert.equal(parsed.balance_rao, 9223372036854775807n);
  assert.equal(parsed.cost.rao, 84n);
  assert.equal(parsed.cost.tao, "0.000000084");
  assert.equal(parsed.price.tao, "0.00054");
  assert.equal(parsed.n, 7);
  assert.throws(() => parseJson('{"amount_rao": 1.5}'), SyntaxError);
  assert.equal(raoToTao(84n), "0.000000084");
  assert.equal(raoToTao(-1_500_000_000n), "-1.500000000");
  assert.equal(raoToTao(9223372036854775807n), "9223372036.854775807");
  assert.equal(taoToRao("9223372036.854775807"), 9223372036854775807n);
});

test("RateLimit headers parse into named policies", () => {
  const headers = new Headers({
    "ratelimit-policy": '"rpm";q=600;w=60, "tpm";q=2000000;w=60, "tpd";q=100000000;w=86400',
    ratelimit: '"rpm";r=599;t=1, "tpm";r=1997952;t=1, "tpd";r=99997952;t=2',
  });
  assert.deepEqual(parseRateLimit(headers), {
    rpm: { quota: 600, window: 60, remaining: 599, reset: 1 },
    tpm: { quota: 2000000, window: 60, remaining: 1997952, reset: 1 },
    tpd: { quota: 100000000, window: 86400, remaining: 99997952, reset: 2 },
  });
  assert.equal(parseRateLimit(new Headers()), undefined);
  assert.equal(parseRetryAfter(new Headers({ "retry-after": "3" })), 3);
  assert.equal(parseRetryAfter(new Headers({ "retry-after": new Date(10_000).toUTCString() }), 5_000), 5);
  assert.equal(parseRetryAfter(new Headers()), undefined);
});

test("the committed generated types match what openapi-typescript makes of openapi/openapi.json", () => {
  const pkg = resolve(repoRoot, "sdk/typescript");
  const out = join(mkdtempSync(join(tmpdir(), "agw-openapi-")), "openapi.ts");
  const cli = join(pkg, "node_modules/openapi-typescript/bin/cli.js");
  const run = spawnSync(process.execPath, [cli, join(repoRoot, "openapi/openapi.json"), "-o", out], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const committed = readFileSync(join(pkg, "src/generated/openapi.ts"), "utf8");
  assert.equal(readFileSync(out, "utf8"), committed, "src/generated/openapi.ts is stale: npm run generate");
  // And the document's operations are all there.
  const doc = JSON.parse(readFileSync(join(repoRoot, "openapi/openapi.json"), "utf8"));
  for (const path of Object.keys(doc.paths)) assert.ok(committed.includes(`"${path}": {`), path);
});
