/**
 * JSON with exact money: every `rao` / `*_rao` number becomes a `bigint` and every `tao`
 * number its decimal text, straight from the JSON text (never through a float, which cannot
 * hold every integer above 2^53).
 */
import { isLosslessNumber, parse } from "lossless-json";

/** Whether a JSON key names an amount of rao. */
function isRaoKey(key: string): boolean {
  return key === "rao" || key.endsWith("_rao");
}

/** A JSON number's text as a rao amount, refusing anything but an integer. */
function raoOf(text: string): bigint {
  if (!/^-?\d+$/.test(text)) {
    throw new SyntaxError(`a rao amount must be an integer, got ${text}`);
  }
  return BigInt(text);
}

/**
 * Parses JSON text; `rao` and `*_rao` numbers come back as `bigint`, `tao` numbers as their
 * decimal text, other numbers as JS numbers.
 */
export function parseJson(text: string): unknown {
  return parse(text, (key, value) => {
    if (!isLosslessNumber(value)) return value;
    const raw = value.value;
    if (isRaoKey(key)) return raoOf(raw);
    if (key === "tao") return raw;
    return Number(raw);
  });
}

/** `V` with numbers replaced by `R` (unions keep their other members: `null`, `undefined`). */
type Swap<V, R> = V extends number ? R : V;

/**
 * A generated response type as this SDK returns it: `rao` / `*_rao` fields are `bigint`,
 * `tao` fields decimal strings.
 */
export type Exact<T> = T extends (infer U)[]
  ? Exact<U>[]
  : T extends object
    ? {
        [K in keyof T]: K extends "rao" | `${string}_rao`
          ? Swap<T[K], bigint>
          : K extends "tao"
            ? Swap<T[K], string>
            : Exact<T[K]>;
      }
    : T;
