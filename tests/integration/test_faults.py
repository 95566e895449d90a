"""#18: the hard faults latfarm survives, kept as tests. A real ``latfarm serve`` and real ``latfarm agent``
processes; the server is SIGKILLed mid-batch (SQLite and PostgreSQL), its Redis dies, or an agent is stopped
(SIGSTOP) or cut off the network well past its lease while another agent works on. Every job ends done, every arch
measured exactly once."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.test_agent_e2e import BATCH, QUICK, Agent, Server
from tests.net_support import CuttableLink, PortTaken, on_a_free_port

pytestmark = pytest.mark.slow
ARCHS = BATCH[:12]
LATE = ("result(s) of jobs no longer held", "not accepted: job")  # dropped (a part's worth) or refused
MEDIUM = ["--rounds", "20", "--runs", "20", "--warmup", "1", "--max-jobs", "4"]  # a group measures for seconds


def exported_server(workdir: Path, **env: str) -> Server:
    """A server (not started) whose artifact store holds ARCHS already, as after a first lease."""
    from latfarm.predictor import nb201
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.domain.conditions import Conditions

    server = Server(workdir / "server", **env)
    server.data_dir.mkdir()
    store = ArtifactStore(server.data_dir / "artifacts")
    for index in ARCHS:
        store.export_file(nb201.to_string(nb201.from_official_index(index)), "onnx", Conditions())
    return server


def assert_measured_once(server: Server, device: str) -> None:
    items = server.request("GET", f"/v1/measurements?device={device}&limit=1000")["items"]
    counts = Counter(item["arch"] for item in items)
    assert len(counts) == len(ARCHS) and set(counts.values()) == {1}, counts


CALL_FAILED = ("server unavailable", "heartbeat failed", "; resuming")  # the agent's lines for a failed call


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_server_killed_mid_batch_loses_nothing(request, tmp_path, backend):
    env = {"LATFARM_DB_URL": request.getfixturevalue("pg_url")} if backend == "postgres" else {}
    server = exported_server(tmp_path, **env)
    server.start()
    agent = None
    try:
        batch = server.submit("killed-server", ARCHS)
        agent = Agent(server, tmp_path, "steady", server.enroll("killed-server"), QUICK)
        wait_for(lambda: server.progress(batch)["done"] >= 4, "a first group done")
        assert server.proc is not None
        server.proc.kill()  # SIGKILL: no graceful stop, transactions in flight are lost
        server.proc.wait(timeout=10)
        time.sleep(2)
        server.start()
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        assert_measured_once(server, "killed-server")
    finally:
        if agent is not None:
            assert agent.terminate() == 0, agent.log()
        server.stop()


def test_an_agent_stopped_past_its_lease_loses_nothing(tmp_path):
    """The stopped agent's leases lapse (4 s) and another agent measures its jobs; resumed, the stopped agent's
    results of them are dropped or refused: nothing is stored twice, and it works on."""
    server = exported_server(tmp_path)
    server.start()
    agents: list[Agent] = []
    try:
        batch = server.submit("stopped-agent", ARCHS)
        sleeper = Agent(server, tmp_path, "sleeper", server.enroll("stopped-agent"), MEDIUM)
        agents.append(sleeper)
        sleeper.wait_log("measuring")
        sleeper.proc.send_signal(signal.SIGSTOP)
        agents.append(Agent(server, tmp_path, "worker", server.enroll("stopped-agent"), QUICK))
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        sleeper.proc.send_signal(signal.SIGCONT)
        # it drops the results (told of the loss by a heartbeat) or the server refuses them (it reported first)
        wait_for(lambda: any(line in sleeper.log() for line in LATE), "the stopped agent's late results")
        assert_measured_once(server, "stopped-agent")
        assert sleeper.proc.poll() is None, sleeper.log()
    finally:
        for agent in agents:
            agent.proc.send_signal(signal.SIGCONT)
            assert agent.terminate() == 0, agent.log()
        server.stop()


def test_redis_dying_mid_batch_loses_nothing(tmp_path):
    """A private Redis (the shared one on 6379 is never touched) is killed while the agent measures: agents then
    wake at their poll timeout, the batch completes, and /healthz says degraded."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    log = tmp_path / "redis.log"

    def start_redis(port: int) -> tuple[int, subprocess.Popen]:
        """A Redis on ``port``, once it says it accepts connections (``PortTaken`` when it could not bind)."""
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with log.open("wb") as out:
            child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: child.poll() is not None or "Ready to accept" in log.read_text(), "Redis", timeout_s=30)
        if child.poll() is not None:
            if "Address already in use" in log.read_text():
                raise PortTaken(port)
            pytest.fail(f"redis-server exited: {log.read_text()[-2000:]}")
        return port, child

    port, redis = on_a_free_port(start_redis)
    server = exported_server(tmp_path, LATFARM_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    agent = None
    try:
        server.start()
        assert server.request("GET", "/healthz")["redis"] == "ok"
        batch = server.submit("redis-dies", ARCHS)
        agent = Agent(server, tmp_path, "steady", server.enroll("redis-dies"), QUICK)
        wait_for(lambda: server.progress(batch)["done"] >= 4, "a first group done")
        redis.kill()
        redis.wait(timeout=10)
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        assert_measured_once(server, "redis-dies")
        assert server.request("GET", "/healthz")["status"] == "degraded"
        log = (server.data_dir / "server.log").read_text()
        assert log.count("redis unavailable") == 1, log[-3000:]  # one warning per outage, not two a second
    finally:
        if agent is not None:
            assert agent.terminate() == 0, agent.log()
        server.stop()
        redis.kill()
        redis.wait(timeout=10)


def test_agents_whose_connections_the_server_ages_out_every_second_lose_nothing(tmp_path):
    """``LATFARM_GRPC_MAX_CONNECTION_AGE_S=1``: the server sends every agent connection GOAWAY about once a second,
    while the agents lease, fetch, measure for seconds, heartbeat and report; their channels reconnect without a
    failed call, and every job is measured once."""
    server = exported_server(tmp_path, LATFARM_GRPC_MAX_CONNECTION_AGE_S="1")
    server.start()
    agents: list[Agent] = []
    try:
        batch = server.submit("aged-out", ARCHS)
        agents += [Agent(server, tmp_path, name, server.enroll("aged-out"), MEDIUM) for name in ("one", "two")]
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        assert_measured_once(server, "aged-out")
        for agent in agents:
            failures = [line for line in agent.log().splitlines() if any(sign in line for sign in CALL_FAILED)]
            assert failures == [], agent.log()
    finally:
        for agent in agents:
            assert agent.terminate() == 0, agent.log()
        server.stop()


def test_an_agent_cut_off_the_network_past_its_lease_loses_nothing(tmp_path):
    """The cut agent's calls hang on a dead link; its leases lapse (4 s) and another agent measures its jobs. When
    the link is back the cut agent reconnects, its results of those jobs are dropped or refused, and it works on."""
    server = exported_server(tmp_path)
    server.start()
    link = CuttableLink(server.grpc_port)
    agents: list[Agent] = []
    try:
        batch = server.submit("cut-agent", ARCHS)
        remote = Agent(SimpleNamespace(grpc=link.address), tmp_path, "remote", server.enroll("cut-agent"), MEDIUM)
        agents.append(remote)
        remote.wait_log("measuring")
        link.cut()
        cut_at = time.monotonic()
        agents.append(Agent(server, tmp_path, "local", server.enroll("cut-agent"), QUICK))
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        time.sleep(max(0.0, cut_at + 15 - time.monotonic()))  # a cut of 15 s at least: well past the lease
        link.mend()
        wait_for(lambda: any(line in remote.log() for line in LATE), "the cut agent's late results", timeout_s=180)
        assert_measured_once(server, "cut-agent")
        assert remote.proc.poll() is None, remote.log()
    finally:
        link.close()
        for agent in agents:
            assert agent.terminate() == 0, agent.log()
        server.stop()
