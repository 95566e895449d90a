"""``latfarm serve`` as a real process: REST, docs, gRPC health, bootstrap key, clean exit on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT

START_TIMEOUT_S = 90


class Served:
    """A running ``latfarm serve`` with the URLs and key it printed."""

    def __init__(self, args: list[str], **settings: str) -> None:
        """Serve with ``args`` and the LATFARM_* ``settings`` (none from this process's environment)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATFARM_")} | settings
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "latfarm.services.cli", "serve", "--http-port", "0", "--grpc-port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self.follow_output, daemon=True).start()
        self.rest = self.expect_line(r"latfarm REST\s+(http://\S+)")
        self.grpc = self.expect_line(r"latfarm gRPC\s+(\S+)")
        self.key = self.expect_line(r"bootstrap admin key \(shown once, store it\): (\S+)")

    def follow_output(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect_line(self, pattern: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, "server exited:\n" + "".join(self.output)
                continue
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.output))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _check_running(served: Served) -> None:
    assert httpx.get(f"{served.rest}/healthz", timeout=10).json()["status"] == "ok"
    assert httpx.get(f"{served.rest}/docs", timeout=10).status_code == 200
    admin = {"Authorization": f"Bearer {served.key}"}
    created = httpx.post(f"{served.rest}/v1/devices", json={"name": "dev1"}, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    with grpc.insecure_channel(served.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "latfarm.v1.AgentService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_serve_sqlite_and_sigint(tmp_path):
    served = Served(["--data-dir", str(tmp_path / "data")])
    try:
        _check_running(served)
    finally:
        code = served.stop(signal.SIGINT)
    assert code == 0, "".join(served.output)
    assert "latfarm stopped" in "".join(served.output)
    assert (tmp_path / "data" / "latfarm.db").exists()


@pytest.mark.slow
def test_serve_postgres_redis_and_sigterm(tmp_path, pg_url, redis_url):
    served = Served(["--db", pg_url, "--redis", redis_url, "--data-dir", str(tmp_path / "data")])
    try:
        _check_running(served)
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0, "".join(served.output)
    assert "latfarm stopped" in "".join(served.output)
