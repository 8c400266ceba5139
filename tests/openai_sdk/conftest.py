"""Session fixtures: one gateway process (built-in simulated upstream, memory store, the dev
token it prints) on a free loopback port, and an official `openai` client pointed at it.

The binary is `AGW_GATEWAY_BIN` when set, else `target/debug/affine-gateway` (which
scripts/check-openai-sdk.sh builds first)."""

import os
import pathlib
import re
import socket
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Variables that would point the gateway away from its self-contained dev mode.
_SCRUB = (
    "CHUTES_API_KEY",
    "GATEWAY_JWT_SECRET",
    "GATEWAY_JWT_SECRET_PREVIOUS",
    "GATEWAY_REDIS_URL",
    "GATEWAY_REDIS_CLUSTER",
    "GATEWAY_CONFIG",
    "GATEWAY_UPSTREAM_URL",
    "GATEWAY_WINNER",
    "GATEWAY_METRICS_LISTEN",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(deadline: float, what: str, check):
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


class Gateway:
    """A running gateway: its base URL and its dev token."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.token, max_retries=0, **kw)


@pytest.fixture(scope="session")
def gateway():
    binary = os.environ.get("AGW_GATEWAY_BIN") or str(ROOT / "target/debug/affine-gateway")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    work = tempfile.TemporaryDirectory(prefix="agw-openai-sdk.")
    out = open(os.path.join(work.name, "stdout"), "w+")
    err = open(os.path.join(work.name, "stderr"), "w+")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=out, stderr=err, cwd=work.name)
    url = f"http://127.0.0.1:{port}"

    def token():
        out.flush()
        m = re.search(r"dev token: (\S+)", pathlib.Path(out.name).read_text())
        if proc.poll() is not None:
            raise RuntimeError(
                f"the gateway exited ({proc.returncode}): {pathlib.Path(err.name).read_text()[-2000:]}"
            )
        return m and m.group(1)

    def ready():
        token()  # raises if the process died
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 30
        tok = _wait(deadline, "the dev token line", token)
        _wait(deadline, "/readyz", ready)
        yield Gateway(url, tok)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
        work.cleanup()


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return gateway.client()
