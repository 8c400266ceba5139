/**
 * btauth/1 nonces: unix time in nanoseconds. That is about 1.8 × 10^18, far above
 * `Number.MAX_SAFE_INTEGER` (2^53 − 1), so nonces are `bigint` and travel as decimal strings;
 * a JS number would round them and break the signature.
 */

let last = 0n;

/**
 * A fresh nonce: the wall clock in nanoseconds (millisecond resolution), strictly greater
 * than every nonce this process handed out before, so two requests in one millisecond
 * never share one (the gateway accepts a hotkey's nonce once).
 */
export function nextNonce(nowMs: number = Date.now()): bigint {
  const now = BigInt(Math.floor(nowMs)) * 1_000_000n;
  last = now > last ? now : last + 1n;
  return last;
}

/** A nonce given as bigint or decimal string, checked and in canonical decimal form. */
export function nonceText(nonce: bigint | string): string {
  if (typeof nonce === "bigint") {
    if (nonce < 0n) throw new RangeError("a nonce is not negative");
    return nonce.toString();
  }
  if (!/^\d{1,39}$/.test(nonce)) throw new RangeError(`a nonce is a decimal integer, got ${nonce}`);
  return BigInt(nonce).toString();
}
