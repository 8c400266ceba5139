// Files of the repository the tests read (vectors, the OpenAPI document).
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs from sdk/typescript/build/test/). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/** A JSON file of the repository. */
export function repoJson<T = any>(path: string): T {
  return JSON.parse(readFileSync(resolve(repoRoot, path), "utf8")) as T;
}
