// Runs the SDK's tests against live gateways started here, on free 127.0.0.1 ports:
// - "main": the gateway on its built-in simulated upstream (no CHUTES_API_KEY), in-memory
//   state, a JWT secret of this run, the plans of test/gateway.toml;
// - "paced": a gateway in front of a `chutes-sim` that streams 20 tokens a second, so a stream
//   the client abandons is still running when it does (the built-in simulator sends a whole
//   answer at once, which would finish before the client could leave).
// The binaries: AGW_GATEWAY_BIN / AGW_CHUTES_SIM_BIN, else the workspace's target/debug.
// Everything it starts is stopped when the tests end, also on failure or Ctrl-C.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const workspace = resolve(pkg, "../..");
const gatewayBin = process.env.AGW_GATEWAY_BIN || join(workspace, "target/debug/affine-gateway");
const simBin = process.env.AGW_CHUTES_SIM_BIN || join(workspace, "target/debug/chutes-sim");
for (const bin of [gatewayBin, simBin]) {
  if (!existsSync(bin)) {
    console.error(`run-tests: ${bin} not found (cargo build --bin affine-gateway --bin chutes-sim)`);
    process.exit(2);
  }
}

const children = [];
const work = mkdtempSync(join(tmpdir(), "agw-sdk-ts-"));
function cleanup() {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

function start(name, bin, args, env) {
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let log = "";
  const keep = (chunk) => {
    log = (log + chunk).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", (code, signal) => {
    if (!stopping) {
      console.error(`run-tests: ${name} exited (${code ?? signal}); its last output:\n${log}`);
      process.exit(1);
    }
  });
  return child;
}

async function waitReady(name, url, deadlineMs = 60_000) {
  const deadline = Date.now() + deadlineMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = String(error?.cause?.code ?? error);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`run-tests: ${name} not ready at ${url} within ${deadlineMs} ms (${last})`);
  process.exit(1);
}

let stopping = false;
const secret = randomBytes(32).toString("hex");
const base = { ...process.env, GATEWAY_JWT_SECRET: secret, RUST_LOG: process.env.RUST_LOG || "warn" };
for (const key of ["CHUTES_API_KEY", "GATEWAY_REDIS_URL", "GATEWAY_WINNER", "GATEWAY_UPSTREAM_URL", "GATEWAY_HOTKEY"]) {
  delete base[key];
}

const mainPort = await freePort();
start("gateway (built-in simulator)", gatewayBin, ["serve"], {
  ...base,
  GATEWAY_LISTEN: `127.0.0.1:${mainPort}`,
  GATEWAY_CONFIG: join(pkg, "test/gateway.toml"),
  GATEWAY_JOURNAL_PATH: join(work, "main.journal"),
});

const simPort = await freePort();
start("chutes-sim (paced)", simBin, ["--listen", `127.0.0.1:${simPort}`, "--tokens-per-sec", "20"], base);
await waitReady("chutes-sim", `http://127.0.0.1:${simPort}/v1/models`);
const pacedPort = await freePort();
start("gateway (paced upstream)", gatewayBin, ["serve"], {
  ...base,
  GATEWAY_LISTEN: `127.0.0.1:${pacedPort}`,
  GATEWAY_UPSTREAM_URL: `http://127.0.0.1:${simPort}/v1`,
  GATEWAY_WINNER: "affine-champ/Affine-Reasoner-32B",
  GATEWAY_JOURNAL_PATH: join(work, "paced.journal"),
});

await waitReady("gateway", `http://127.0.0.1:${mainPort}/readyz`);
await waitReady("paced gateway", `http://127.0.0.1:${pacedPort}/readyz`);

const issued = spawnSync(gatewayBin, ["token", "issue", "--sub", "sdk-ts-admin", "--scope", "admin", "--ttl", "1h"], {
  env: base,
  encoding: "utf8",
});
if (issued.status !== 0) {
  console.error(`run-tests: token issue failed: ${issued.stderr}`);
  process.exit(1);
}

const testDir = join(pkg, "build/test");
const files = readdirSync(testDir)
  .filter((f) => f.endsWith(".test.js"))
  .map((f) => join(testDir, f));
const run = spawnSync(process.execPath, ["--test", ...files], {
  stdio: "inherit",
  env: {
    ...process.env,
    AGW_SDK_BASE_URL: `http://127.0.0.1:${mainPort}`,
    AGW_SDK_PACED_URL: `http://127.0.0.1:${pacedPort}`,
    AGW_SDK_ADMIN_TOKEN: issued.stdout.trim(),
    AGW_SDK_GATEWAY_BIN: gatewayBin,
    AGW_SDK_JWT_SECRET: secret,
  },
});
stopping = true;
process.exit(run.status ?? 1); // runs cleanup(): the gateways would keep the event loop alive
