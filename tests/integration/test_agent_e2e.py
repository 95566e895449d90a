"""End to end: a real ``latfarm serve`` (SQLite in a temp folder) and real ``latfarm agent`` processes.

Two agents measure a 30-arch batch; one agent killed (SIGKILL) mid-batch loses nothing (its leases lapse); a
server restart mid-batch loses nothing; SIGTERM hands the lease back. Every arch ends measured exactly once."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # its module server exports models first

ROOT = Path(__file__).resolve().parents[2]
LATFARM = str(Path(sys.executable).with_name("latfarm"))
ADMIN_KEY = "e2e-admin-key"
QUICK = ["--rounds", "2", "--runs", "5", "--warmup", "1", "--max-jobs", "4"]
SLOW = ["--rounds", "50", "--runs", "50", "--warmup", "5", "--max-jobs", "4"]
BATCH = list(range(100, 130))  # 30 NB201 indices; their artifacts are exported once and shared by the tests


REST_PORT, GRPC_PORT = re.compile(r"latfarm REST\s+http://\S+:(\d+)"), re.compile(r"latfarm gRPC\s+\S+:(\d+)")


class Server:
    def __init__(self, data_dir: Path, **env: str):
        """``env``: LATFARM_* settings over the ones these tests use. Its ports are known once it has started."""
        self.data_dir, self.http_port, self.grpc_port = data_dir, 0, 0
        self.proc: subprocess.Popen | None = None
        self.env = env

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        """Start ``latfarm serve`` and wait for /healthz: the first time on ports it picks (0) and prints, which this
        reads back from its log; again on the same ones (agents know them)."""
        env = {
            **os.environ,
            "LATFARM_ADMIN_KEY": ADMIN_KEY,
            "LATFARM_LEASE_SECONDS": "4",
            "LATFARM_HEARTBEAT_INTERVAL_S": "1",
            "LATFARM_MAX_ATTEMPTS": "10",  # a loaded test machine may let a 4 s lease lapse more than twice
            **self.env,
        }
        args = [LATFARM, "serve", "--data-dir", str(self.data_dir), "--http-port", str(self.http_port)]
        log_path = self.data_dir / "server.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        start = log.tell()
        self.proc = subprocess.Popen([*args, "--grpc-port", str(self.grpc_port)], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log_path.read_text()[-3000:]
            if not self.http_port:
                printed = log_path.read_bytes()[start:].decode(errors="replace")
                rest, grpc = REST_PORT.search(printed), GRPC_PORT.search(printed)
                if rest is None or grpc is None:
                    time.sleep(0.3)
                    continue
                self.http_port, self.grpc_port = int(rest[1]), int(grpc[1])
            try:
                self.request("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("the server did not come up")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {ADMIN_KEY}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def enroll(self, device: str) -> str:
        return self.request("POST", f"/v1/devices/{device}/enrollments", {})["token"]

    def submit(self, device: str, archs: list[int], *, create: bool = True) -> str:
        if create:
            self.request("POST", "/v1/devices", {"name": device})
        return self.request("POST", "/v1/jobs", {"device": device, "archs": archs})["id"]

    def progress(self, batch: str) -> dict:
        return self.request("GET", f"/v1/jobs/{batch}")

    def wait_done(self, batch: str, total: int, timeout_s: float = 240) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                progress = self.progress(batch)
            except OSError:
                progress = {}
            if progress.get("done", 0) + progress.get("failed", 0) == total:
                return progress
            time.sleep(0.5)
        raise TimeoutError(f"batch {batch} not finished: {progress}")

    def measurements(self, device: str) -> list[tuple[str, int, str]]:
        """(arch, how many measurements, agent ids) per measured arch of the device, read from the SQLite file."""
        with sqlite3.connect(self.data_dir / "latfarm.db") as db:
            return db.execute(
                "select a.arch, count(*), group_concat(m.agent_id) from measurements m "
                "join archs a on a.id = m.arch_id join devices d on d.id = m.device_id "
                "where d.name = ? group by a.arch",
                (device,),
            ).fetchall()


class Agent:
    def __init__(self, server: Server, workdir: Path, name: str, token: str, options: list[str]):
        self.log_path = workdir / f"{name}.log"
        args = [LATFARM, "agent", "--server", server.grpc, "--enroll", token, "--state-dir", str(workdir / name)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*args, "--name", name, *options], stdout=log, stderr=log, cwd=ROOT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {text!r} in the agent log:\n{self.log()}"
            time.sleep(0.2)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from latfarm.predictor import nb201
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.domain.conditions import Conditions

    server = Server(tmp_path_factory.mktemp("latfarm-server"))
    store = ArtifactStore(server.data_dir / "artifacts")  # exported up front, as the server would on first lease
    for index in BATCH:
        store.export_file(nb201.to_string(nb201.from_official_index(index)), "onnx", Conditions())
    server.start()
    yield server
    server.stop()


def assert_each_measured_once(server: Server, device: str, total: int) -> set[str]:
    rows = server.measurements(device)
    assert len(rows) == total, rows
    assert all(count == 1 for _, count, _ in rows), [r for r in rows if r[1] != 1]
    return {agent for _, _, agent in rows}


def test_two_agents_measure_a_batch(server, tmp_path):
    server.request("POST", "/v1/devices", {"name": "e2e-two"})
    agents = [Agent(server, tmp_path, f"a{i}", server.enroll("e2e-two"), QUICK) for i in range(2)]
    try:
        for agent in agents:  # both online before the batch exists, or the first may finish it alone
            agent.wait_log("registered as agent")
        batch = server.submit("e2e-two", BATCH, create=False)
        progress = server.wait_done(batch, len(BATCH))
        assert progress["done"] == len(BATCH) and progress["failed"] == 0, progress
        assert len(assert_each_measured_once(server, "e2e-two", len(BATCH))) == 2  # both agents took part
        rows = server.request("GET", "/v1/measurements?device=e2e-two&limit=100")["items"]
        assert len(rows) == len(BATCH)
        for row in rows:  # the agent's default headline: the fastest timed run
            assert row["statistic"] == "min" and row["latency_ms"] == row["min_ms"] <= row["median_ms"], row
    finally:
        codes = [agent.terminate() for agent in agents]
    assert codes == [0, 0], [a.log() for a in agents]
    assert (tmp_path / "a0" / "state.json").exists()


def test_a_request_protocol_overrides_the_agent_options(server, tmp_path):
    """``latfarm measure`` with a protocol of its own: the agent (2 rounds, statistic min) measures as asked."""
    server.request("POST", "/v1/devices", {"name": "e2e-protocol"})
    agent = Agent(server, tmp_path, "p0", server.enroll("e2e-protocol"), QUICK)
    agent.wait_log("registered as agent")  # online: measure refuses a device with no agent online
    out = tmp_path / "results.csv"
    listed = tmp_path / "archs.txt"
    listed.write_text(f"# one arch from a file, one on the command line\n{BATCH[1]}\n")
    cmd = [
        sys.executable,
        "-m",
        "latfarm.services.cli",
        "measure",
        "e2e-protocol",
        str(BATCH[0]),
        "--from",
        str(listed),
    ]
    cmd += ["--rounds", "3"]
    cmd += ["--statistic", "median", "--out", str(out), "--timeout", "120"]
    cmd += ["--server", f"http://127.0.0.1:{server.http_port}", "--key", ADMIN_KEY]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert "2 measured" in done.stdout and f", 0 failed: {out}" in done.stdout  # maybe "(2 unstable: ...)" between
    finally:
        assert agent.terminate() == 0, agent.log()
    rows = list(csv.DictReader(out.open()))
    assert [r["state"] for r in rows] == ["done", "done"] and all(float(r["latency_ms"]) > 0 for r in rows), rows
    with sqlite3.connect(server.data_dir / "latfarm.db") as db:
        stored = db.execute(
            "select m.protocol, m.round_medians_ms, m.latency_ms, m.median_ms, m.provenance from measurements m "
            "join devices d on d.id = m.device_id where d.name = 'e2e-protocol'"
        ).fetchall()
    assert len(stored) == 2
    for protocol, medians, latency_ms, median_ms, provenance in stored:
        assert json.loads(protocol)["statistic"] == "median" and len(json.loads(medians)) == 3, (protocol, medians)
        assert latency_ms == median_ms
        assert 0 <= float(json.loads(provenance)["extra"]["unsteady_share"]) <= 1, provenance
    assert sorted(float(r["latency_ms"]) for r in rows) == sorted(row[2] for row in stored)


def test_restarted_agent_keeps_its_identity(server, tmp_path):
    server.request("POST", "/v1/devices", {"name": "e2e-same"})
    token = server.enroll("e2e-same")
    first = Agent(server, tmp_path, "same", token, [*QUICK, "--once"])
    assert first.proc.wait(timeout=60) == 0, first.log()
    state = json.loads((tmp_path / "same" / "state.json").read_text())
    again = Agent(server, tmp_path, "same", "no-such-token", [*QUICK, "--once"])  # the state file wins
    assert again.proc.wait(timeout=60) == 0, again.log()
    assert f"resuming as agent {state['agent_id']}" in again.log()


def test_killed_agent_loses_nothing(server, tmp_path):
    """A SIGKILLed agent's jobs go to another; its state folder, which a second agent could not use while it lived
    (one line, exit 1), is free again: the next agent on it resumes."""
    batch = server.submit("e2e-kill", BATCH)
    victim = Agent(server, tmp_path, "victim", server.enroll("e2e-kill"), SLOW)
    victim.wait_log("measuring")
    command = [LATFARM, "agent", "--server", server.grpc, "--state-dir", str(tmp_path / "victim")]
    twin = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    survivor = Agent(server, tmp_path, "survivor", server.enroll("e2e-kill"), QUICK)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    try:
        progress = server.wait_done(batch, len(BATCH))
        assert progress["done"] == len(BATCH), progress
        assert_each_measured_once(server, "e2e-kill", len(BATCH))
    finally:
        assert survivor.terminate() == 0, survivor.log()
    assert twin.returncode == 1, twin.stderr
    assert twin.stderr.splitlines() == [
        f"latfarm agent: {tmp_path / 'victim'} is in use by latfarm agent (pid {victim.proc.pid}): "
        "one agent per state folder (--state-dir)"
    ]
    again = subprocess.run([*command, "--once"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert again.returncode == 0 and "resuming as agent" in again.stderr, again.stderr


def test_server_restart_loses_nothing(server, tmp_path):
    batch = server.submit("e2e-restart", BATCH)
    agent = Agent(server, tmp_path, "steady", server.enroll("e2e-restart"), QUICK)
    try:
        deadline = time.monotonic() + 120
        while server.progress(batch)["done"] < 4:
            assert time.monotonic() < deadline and agent.proc.poll() is None, agent.log()
            time.sleep(0.2)
        server.stop()
        time.sleep(2)
        server.start()
        progress = server.wait_done(batch, len(BATCH))
        assert progress["done"] == len(BATCH), progress
        assert_each_measured_once(server, "e2e-restart", len(BATCH))
    finally:
        assert agent.terminate() == 0, agent.log()


def test_sigterm_hands_the_lease_back(server, tmp_path):
    batch = server.submit("e2e-term", BATCH[:5])
    agent = Agent(server, tmp_path, "leaver", server.enroll("e2e-term"), SLOW)
    agent.wait_log("measuring")
    assert server.progress(batch)["running"] > 0
    assert agent.terminate() == 0, agent.log()
    assert "handed back" in agent.log()
    progress = server.progress(batch)  # at once, not after the lease lapses
    assert progress["running"] == 0 and progress["queued"] == 5, progress
