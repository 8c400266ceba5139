"""Starts the gateway binary (and the simulator binary) for the live tests, and talks admin.

The binaries come from ``AGW_GATEWAY_BIN`` / ``AGW_CHUTES_SIM_BIN``, else the workspace's
``target/debug`` (``scripts/check-sdk-python.sh`` builds them). Every process listens on a
free 127.0.0.1 port, keeps its state in memory and is stopped when the test session ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[3]
GATEWAY_HOTKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"  # the dev default, //Bob
SIM_MODEL = "affine-champ/Affine-Reasoner-32B"


def binary(env_var: str, name: str) -> Path:
    configured = os.environ.get(env_var)
    path = Path(configured) if configured else REPO / "target" / "debug" / name
    if not path.is_file():
        raise RuntimeError(
            f"{path} not found: build it (cargo build --bin {name}) or set {env_var}"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.05) -> Any:
    """Polls ``check()`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _clean_env() -> dict[str, str]:
    """The environment without anything that would configure the gateway behind our back."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "CHUTES_", "OTEL_")) and k != "RUST_LOG"
    }


class Process:
    """A child process whose output goes to a log file, stopped on ``stop()``."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args, env=dict(env), stdout=self._out, stderr=subprocess.STDOUT, cwd=cwd
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Gateway:
    """One gateway process with an admin token; ``url`` is its base URL."""

    def __init__(self, workdir: Path, name: str, config: str, env: Mapping[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.bin = binary("AGW_GATEWAY_BIN", "affine-gateway")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / f"{name}.toml"
        config_path.write_text(config)
        self.env = {
            **_clean_env(),
            "GATEWAY_CONFIG": str(config_path),
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_JWT_SECRET": secrets.token_hex(32),
            "GATEWAY_HOTKEY": GATEWAY_HOTKEY,
            "RUST_LOG": "info,access=off",
            **env,
        }
        self.process = Process(
            [str(self.bin), "serve"], self.env, workdir / f"{name}.log", cwd=workdir
        )
        try:
            wait_until(f"{name} /readyz", self._ready, timeout=120, interval=0.1)
        except BaseException:
            self.process.stop()
            raise
        self.admin_token = self.issue_token("sdk-tests-ops", "admin")
        self.admin = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def _ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"the gateway exited:\n{self.process.tail()}")
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def issue_token(self, sub: str, scope: str, ttl: str = "2h") -> str:
        out = subprocess.run(
            [str(self.bin), "token", "issue", "--sub", sub, "--scope", scope, "--ttl", ttl],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return out.stdout.decode().strip()

    def put_account(self, account_id: str, **fields: Any) -> dict[str, Any]:
        r = self.admin.put(f"/admin/v1/accounts/{account_id}", json=fields)
        assert r.status_code in (200, 201), r.text
        value: dict[str, Any] = r.json()
        return value

    def enterprise(self, account_id: str, **fields: Any) -> str:
        """Creates the account and answers a reason-scoped bearer token for it."""
        self.put_account(account_id, **fields)
        return self.issue_token(account_id, "reason")

    def usage_events(self) -> list[dict[str, Any]]:
        """Every usage event of this month (the admin export, JSON lines)."""
        month = time.strftime("%Y-%m", time.gmtime())
        r = self.admin.get("/admin/v1/usage/export", params={"month": month, "format": "jsonl"})
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.close()
        self.process.stop()


class Simulator:
    """The standalone Chutes simulator, pacing its tokens (for streams long enough to cut)."""

    def __init__(self, workdir: Path, tokens_per_sec: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = Process(
            [
                str(binary("AGW_CHUTES_SIM_BIN", "chutes-sim")),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--tokens-per-sec",
                str(tokens_per_sec),
                "--reasoning-tokens",
                "200",
                "--output-tokens",
                "200",
            ],
            _clean_env(),
            workdir / "chutes-sim.log",
            cwd=workdir,
        )
        try:
            wait_until("chutes-sim", self._ready, timeout=60, interval=0.1)
        except BaseException:
            self.process.stop()
            raise

    def _ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"chutes-sim exited:\n{self.process.tail()}")
        try:
            return httpx.get(self.url + "/models", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.process.stop()


@contextlib.contextmanager
def running(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for t in reversed(things):
            t.stop()
