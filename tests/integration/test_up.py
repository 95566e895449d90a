"""``latfarm up`` end to end: server, local agent, adaptation to this machine, predictions, clean Ctrl-C."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from latfarm.agents.state import AgentState, save_state
from latfarm.predictor import nb201
from latfarm.services.cli.up import agent_known
from latfarm.services.client import Client, LatfarmError
from latfarm.services.core.security import hash_secret
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Agent
from tests.api_support import ADMIN_KEY

pytestmark = pytest.mark.slow
SAMPLES = 5


SERVER_UP = re.compile(r"server up: (http://\S+) ")


def _running(pid: str) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one left unreaped by whoever inherited it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


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


def _up(tmp_path, key: str, **extra_env: str) -> tuple[subprocess.Popen, str, str]:
    """``latfarm up`` on ports it picks (0): the process, the URL its ``server up`` line names and its output to
    there (the rest is left to read)."""
    env = {**os.environ, "LATFARM_ADMIN_KEY": key, "LATFARM_HEARTBEAT_INTERVAL_S": "2", **extra_env}
    cmd = [sys.executable, "-m", "latfarm.services.cli", "up", "--samples", str(SAMPLES), "--data-dir", str(tmp_path)]
    cmd += ["--http-port", "0", "--grpc-port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    shown = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        shown += line.decode(errors="replace")
        if found := SERVER_UP.search(shown):
            return proc, found[1], shown
    raise AssertionError(f"latfarm up exited with {proc.wait()} before its server was up:\n{shown}")


def _serving(proc: subprocess.Popen) -> str:
    """``up``'s output up to its summary's last line: from there it serves, and Ctrl-C ends it normally (exit 0;
    before, Ctrl-C interrupts it: exit 130)."""
    shown = b""
    assert proc.stdout is not None
    for line in proc.stdout:
        shown += line
        if line.startswith(b"Ctrl-C stops everything."):
            break
    return shown.decode(errors="replace")


def _stop(proc: subprocess.Popen) -> str:
    """Ctrl-C to ``up``; its output from here on."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)[0].decode(errors="replace")


def test_up_adapts_to_this_machine_and_serves_predictions(tmp_path):
    key = "lf_admin_test_up"
    proc, url, shown = _up(tmp_path, key)
    client = Client(url, key)
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
        children = (Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()).split()
        argv = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") for pid in children}
        assert any("agent" in args for args in argv.values()), argv  # the agent runs, with no secret in its argv
        assert not [arg for args in argv.values() for arg in args if key in arg or "lf_enroll" in arg], argv
        items = client.predict("local", others + measured)
        assert [i["source"] for i in items[:100]] == ["predicted"] * 100
        assert all(i["latency_ms"] > 0 and i["std_ms"] >= 0 for i in items[:100]), items[:100]
        assert {i["source"] for i in items[100:]} == {"measured"}
        shown += _serving(proc)
    finally:
        out = shown + _stop(proc)
    assert proc.returncode == 0, out
    assert "latfarm is up" in out and f"{url}/docs" in out

    # a second run re-uses the adaptation: nothing is measured again; TLS settings meant for `latfarm serve`
    # (here naming no files at all) do not reach up's own server, whose local agent speaks plain gRPC
    missing = str(tmp_path / "missing.pem")
    restarted = datetime.now(timezone.utc)
    proc, url, shown = _up(tmp_path, key, LATFARM_GRPC_TLS_CERT=missing, LATFARM_GRPC_TLS_KEY=missing)
    client = Client(url, key)
    try:
        again = _wait_active(client, proc, timeout=120)
        assert again["id"] == state["id"]
        deadline = time.monotonic() + 60  # the local agent is handed a token, but resumes with its credential
        while not any(datetime.fromisoformat(a["last_heartbeat"]) > restarted for a in client.agents("local")):
            assert time.monotonic() < deadline, client.agents("local")
            time.sleep(0.5)
        assert len(client.agents("local")) == 1
        children = (Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()).split()
        assert len(children) == 2, children  # server and agent
        proc.kill()  # a SIGKILLed `up` cannot stop its children: they die with it
        out = shown + proc.communicate(timeout=30)[0].decode(errors="replace")
        deadline = time.monotonic() + 30
        while [pid for pid in children if _running(pid)]:
            assert time.monotonic() < deadline, f"children {children} outlived a SIGKILLed up"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert "reused" in out
    assert "LATFARM_GRPC_TLS_CERT and LATFARM_GRPC_TLS_KEY ignored" in out


def test_up_enrolls_its_agent_only_when_the_server_does_not_know_it(live_api, tmp_path):
    """``up`` hands the local agent a token on the first run and after a database reset, not on every start."""
    url, app = live_api
    agent_dir = tmp_path / "agent-local"
    with Client(url, ADMIN_KEY) as client:
        client.create_device("local")
        assert not agent_known(client, "local", agent_dir)  # no state yet
        save_state(agent_dir, AgentState("a1b2", "lf_agent_secret", "local"))
        assert not agent_known(client, "local", agent_dir)  # saved, but this server never registered it
        with transaction(app.state.sessions) as session:
            device = device_by_name(session, "local")
            session.add(Agent(id="a1b2", device_id=device.id, credential_hash=hash_secret("lf_agent_secret")))
        assert agent_known(client, "local", agent_dir)
        (agent_dir / "state.json").write_text("{not json")
        assert agent_known(client, "local", agent_dir)  # corrupt: no token; the agent reports the state file
