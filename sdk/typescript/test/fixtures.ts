// Test fixtures: the gateways scripts/run-tests.mjs started, accounts and tokens on them.
import { spawnSync } from "node:child_process";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is unset: run the tests with scripts/run-tests.mjs (npm test)`);
  return value;
}

/** The gateway on the built-in simulator. */
export const BASE_URL = env("AGW_SDK_BASE_URL");
/** The gateway in front of a paced simulator (streams last about two seconds). */
export const PACED_URL = env("AGW_SDK_PACED_URL");
/** The dev gateway hotkey (`//Bob`), which every signature must name. */
export const GATEWAY_HOTKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

const ADMIN_TOKEN = env("AGW_SDK_ADMIN_TOKEN");
const GATEWAY_BIN = env("AGW_SDK_GATEWAY_BIN");
const JWT_SECRET = env("AGW_SDK_JWT_SECRET");

/** An admin call; throws on a status other than `expect`. */
export async function admin(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  expect: number[] = [200, 201],
): Promise<any> {
  const response = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await response.text();
  if (!expect.includes(response.status)) {
    throw new Error(`${method} ${path}: ${response.status} ${text}`);
  }
  return text ? JSON.parse(text) : undefined;
}

/** Creates (or updates) an account on `base` and returns a `reason` token for it. */
export async function account(
  base: string,
  id: string,
  fields: Record<string, unknown>,
): Promise<string> {
  await admin(base, "PUT", `/admin/v1/accounts/${id}`, fields);
  const issued = spawnSync(GATEWAY_BIN, ["token", "issue", "--sub", id, "--scope", "reason", "--ttl", "1h"], {
    env: { ...process.env, GATEWAY_JWT_SECRET: JWT_SECRET },
    encoding: "utf8",
  });
  if (issued.status !== 0) throw new Error(`token issue: ${issued.stderr}`);
  return issued.stdout.trim();
}

/** Polls `probe` until it returns a value (not `undefined`), or fails after `ms`. */
export async function eventually<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** This month, `YYYY-MM` (UTC), as the usage export names it. */
export function thisMonth(): string {
  return new Date().toISOString().slice(0, 7);
}

/** Today, `YYYY-MM-DD` (UTC). */
export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

/** A unique suffix for ids and key derivations of one test run. */
export const RUN = Math.random().toString(36).slice(2, 8);
