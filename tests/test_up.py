"""``latfarm up`` end to end: server, local agent, adaptation to this machine, predictions, clean Ctrl-C."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from predictor import nb201
from services.client import Client, LatfarmError

pytestmark = pytest.mark.slow
SAMPLES = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_active(client: Client, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        try:
            state = client.device("local")["predictor"]
        except (LatfarmError, OSError):
            state = {}
        if state.get("state") == "active":
            return state
        assert state.get("state") != "failed", state
        time.sleep(1)
    raise AssertionError(f"predictor not active after {timeout} s: {state}")


def _up(tmp_path, http_port: int, grpc_port: int, key: str, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "LATFARM_ADMIN_KEY": key, "LATFARM_HEARTBEAT_INTERVAL_S": "2", **extra_env}
    cmd = [sys.executable, "-m", "services.cli", "up", "--samples", str(SAMPLES), "--data-dir", str(tmp_path)]
    cmd += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_up_adapts_to_this_machine_and_serves_predictions(tmp_path):
    http_port, grpc_port, key = _free_port(), _free_port(), "lf_admin_test_up"
    proc = _up(tmp_path, http_port, grpc_port, key)
    client = Client(f"http://127.0.0.1:{http_port}", key)
    try:
        state = _wait_active(client, proc, timeout=240)
        assert state["samples"] == SAMPLES
        device = client.device("local")
        assert device["name"] == "local"
        measured = [m["arch"] for m in client.measurements(device="local")]
        assert len(set(measured)) >= 3
        others = random.Random(0).sample(
            [a for a in (nb201.to_string(o) for o in nb201.official_ops_table()) if a not in measured], 100
        )
        items = client.predict("local", others + measured)
        assert [i["source"] for i in items[:100]] == ["predicted"] * 100
        assert all(i["latency_ms"] > 0 and i["std_ms"] >= 0 for i in items[:100]), items[:100]
        assert {i["source"] for i in items[100:]} == {"measured"}
    finally:
        out = _stop(proc)
    assert "latfarm is up" in out and f"http://127.0.0.1:{http_port}/docs" in out

    # a second run re-uses the adaptation: nothing is measured again; TLS settings meant for `latfarm serve`
    # (here naming no files at all) do not reach up's own server, whose local agent speaks plain gRPC
    missing = str(tmp_path / "missing.pem")
    restarted = datetime.now(timezone.utc)
    proc = _up(tmp_path, http_port, grpc_port, key, LATFARM_GRPC_TLS_CERT=missing, LATFARM_GRPC_TLS_KEY=missing)
    try:
        again = _wait_active(client, proc, timeout=120)
        assert again["id"] == state["id"]
        deadline = time.monotonic() + 60  # the local agent is handed a token, but resumes with its credential
        while not any(datetime.fromisoformat(a["last_heartbeat"]) > restarted for a in client.agents("local")):
            assert time.monotonic() < deadline, client.agents("local")
            time.sleep(0.5)
        assert len(client.agents("local")) == 1
    finally:
        out = _stop(proc)
    assert "reused" in out
    assert "LATFARM_GRPC_TLS_CERT and LATFARM_GRPC_TLS_KEY ignored" in out
