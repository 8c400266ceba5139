/**
 * The IETF httpapi rate-limit headers (draft-11) the gateway sends on `/v1/reason` and
 * `/v1/chat/completions`:
 *
 * ```text
 * RateLimit-Policy: "rpm";q=600;w=60, "tpm";q=2000000;w=60
 * RateLimit: "rpm";r=599;t=1, "tpm";r=1997952;t=1
 * ```
 */
import { parseList, type Item, type InnerList } from "structured-headers";

/** One named limit (`rpm`, `tpm`, `tpd`, `subnet-rpm`, …). */
export interface RateLimitPolicy {
  /** `q`: the quota. */
  quota?: number;
  /** `w`: its window, seconds. */
  window?: number;
  /** `r`: what remains now. */
  remaining?: number;
  /** `t`: seconds until the bucket is full again. */
  reset?: number;
}

/** The parsed headers: each policy by name, in the order the gateway sent them. */
export type RateLimit = Record<string, RateLimitPolicy>;

function isItem(member: Item | InnerList): member is Item {
  return !Array.isArray(member[0]);
}

function each(
  header: string | null,
  fields: Record<string, keyof RateLimitPolicy>,
  into: RateLimit,
): void {
  if (!header) return;
  let list;
  try {
    list = parseList(header);
  } catch {
    return; // A header we cannot read is no reason to fail the call it came with.
  }
  for (const member of list) {
    if (!isItem(member)) continue;
    const [name, params] = member;
    if (typeof name !== "string" && typeof name !== "object") continue;
    const key = String(name);
    const policy = (into[key] ??= {});
    for (const [param, field] of Object.entries(fields)) {
      const value = params.get(param);
      if (typeof value === "number") policy[field] = value;
    }
  }
}

/** Parses `RateLimit-Policy` and `RateLimit`; `undefined` when neither is present. */
export function parseRateLimit(headers: Headers): RateLimit | undefined {
  const policy = headers.get("ratelimit-policy");
  const current = headers.get("ratelimit");
  if (!policy && !current) return undefined;
  const out: RateLimit = {};
  each(policy, { q: "quota", w: "window" }, out);
  each(current, { r: "remaining", t: "reset" }, out);
  return out;
}

/**
 * `Retry-After` in seconds: delay-seconds, or an HTTP date counted from now. `undefined`
 * when absent or unreadable.
 */
export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const value = headers.get("retry-after")?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}
