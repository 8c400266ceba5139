// Fails when src/generated/openapi.ts is not what openapi-typescript (the pinned version)
// makes of openapi/openapi.json today: regenerate with `npm run generate` and commit.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dir = mkdtempSync(join(tmpdir(), "agw-openapi-ts-"));
const out = join(dir, "openapi.ts");
try {
  const run = spawnSync(
    process.execPath,
    [join(pkg, "node_modules/openapi-typescript/bin/cli.js"), join(pkg, "../../openapi/openapi.json"), "-o", out],
    { encoding: "utf8" },
  );
  if (run.status !== 0) {
    console.error(run.stderr);
    process.exit(1);
  }
  const fresh = readFileSync(out, "utf8");
  const committed = readFileSync(join(pkg, "src/generated/openapi.ts"), "utf8");
  if (fresh !== committed) {
    console.error("src/generated/openapi.ts differs from openapi/openapi.json: run `npm run generate` in sdk/typescript and commit");
    process.exit(1);
  }
  console.log("generated types match openapi/openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
