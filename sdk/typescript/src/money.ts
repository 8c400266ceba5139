/** Rao and TAO: 1 TAO = 10^9 rao, kept as integers (`bigint`) and exact decimal strings. */

/** Rao in one TAO. */
export const RAO_PER_TAO = 1_000_000_000n;

/** A cost or balance in both units, exactly. */
export interface Cost {
  /** Integer rao. */
  rao: bigint;
  /** The same amount in TAO as a decimal string with 9 places, e.g. `"0.000000084"`. */
  tao: string;
}

/** `rao` as TAO with 9 decimals, exactly (`-1n` → `"-0.000000001"`). */
export function raoToTao(rao: bigint): string {
  const negative = rao < 0n;
  const abs = negative ? -rao : rao;
  const whole = abs / RAO_PER_TAO;
  const frac = (abs % RAO_PER_TAO).toString().padStart(9, "0");
  return `${negative ? "-" : ""}${whole}.${frac}`;
}

/** A decimal TAO string (at most 9 decimals) as rao, exactly. */
export function taoToRao(tao: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(tao.trim());
  if (!m) throw new RangeError(`not a TAO amount with at most 9 decimals: ${tao}`);
  const [, sign, whole, frac = ""] = m;
  const rao = BigInt(whole!) * RAO_PER_TAO + BigInt(frac.padEnd(9, "0"));
  return sign === "-" ? -rao : rao;
}

/** A {@link Cost} from rao. */
export function costOf(rao: bigint): Cost {
  return { rao, tao: raoToTao(rao) };
}
