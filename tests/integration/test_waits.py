"""Waiting for results across a real server's restart, and results that reach the server as they are measured: a
real ``latfarm serve``, real ``latfarm agent`` processes and the ``latfarm`` commands as a user runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_agent_e2e import ADMIN_KEY, LATFARM, QUICK, Agent, Server
from tests.integration.test_faults import ARCHS, exported_server, wait_for

pytestmark = pytest.mark.slow
GIVE_UP_S = 2  # LATFARM_WAIT_RETRY_S of the `results` that gives up


def command(server: Server, workdir: Path, name: str, *args: str, **env: str) -> subprocess.Popen:
    """``latfarm ARGS`` against ``server``, its stdout and stderr in ``workdir/name.out`` / ``.err``."""
    environment = {
        **os.environ,
        "LATFARM_SERVER": f"http://127.0.0.1:{server.http_port}",
        "LATFARM_API_KEY": ADMIN_KEY,
        **env,
    }
    out, err = open(workdir / f"{name}.out", "wb"), open(workdir / f"{name}.err", "wb")  # noqa: SIM115
    return subprocess.Popen([LATFARM, *args], env=environment, stdout=out, stderr=err)


def stderr(workdir: Path, name: str) -> list[str]:
    return (workdir / f"{name}.err").read_text().splitlines()


def csv_states(path: Path) -> list[str]:
    with path.open() as file:
        return [row["state"] for row in csv.DictReader(file)]


def test_measure_and_results_wait_through_a_server_restart(tmp_path):
    server = exported_server(tmp_path, LATFARM_HTTP_ACCESS_LOG="true")
    server.start()
    agents: list[Agent] = []
    try:
        server.request("POST", "/v1/devices", {"name": "restarted"})
        archs = [str(index) for index in ARCHS[:4]]
        measure = command(
            server,
            tmp_path,
            "measure",
            "measure",
            "restarted",
            *archs,
            "--wait-for-agent",
            "--out",
            str(tmp_path / "m.csv"),
        )
        wait_for(lambda: any("wait queued" in line for line in stderr(tmp_path, "measure")), "the jobs queued")
        server.stop()  # on the same ports again after a while: the agent reconnects, measure waits on
        time.sleep(3)
        server.start()
        agents.append(Agent(server, tmp_path, "first", server.enroll("restarted"), QUICK))
        assert measure.wait(timeout=180) == 0, stderr(tmp_path, "measure")
        assert csv_states(tmp_path / "m.csv") == ["done"] * 4
        told = [line for line in stderr(tmp_path, "measure") if "is unreachable or busy" in line]
        assert len(told) == 1 and told[0].startswith("latfarm measure: http://127.0.0.1:"), told
        assert told[0].endswith("; retrying for up to 300 s")

        assert agents.pop().terminate() == 0
        batch = server.submit("restarted", [ARCHS[4]], create=False)
        out = tmp_path / "r.csv"
        results = command(
            server, tmp_path, "results", "results", batch, "--out", str(out), LATFARM_WAIT_RETRY_S=str(GIVE_UP_S)
        )
        log = server.data_dir / "server.log"
        wait_for(lambda: f"GET /v1/jobs/{batch} HTTP" in log.read_text(errors="replace"), "results waiting")
        server.stop()
        assert results.wait(timeout=60) == 1
        last = stderr(tmp_path, "results")[-1]
        assert last.startswith(f"latfarm results: http://127.0.0.1:{server.http_port} unreachable or busy for 2 s (GET")
        resume = f"latfarm results {batch} --out {out}"
        assert last.endswith(f"; the jobs go on on the server; their results: {resume}"), last
        assert not out.exists()

        server.start()
        agents.append(Agent(server, tmp_path, "second", server.enroll("restarted"), QUICK))
        again = command(server, tmp_path, "again", *resume.split()[1:])
        assert again.wait(timeout=180) == 0, stderr(tmp_path, "again")
        assert csv_states(out) == ["done"]
    finally:
        for agent in agents:
            agent.terminate()
        server.stop()


def test_results_reach_the_server_as_the_agent_measures_a_group(tmp_path):
    """A group of 6 jobs leased at once, each measured for about a second: the batch's progress moves before the
    group ends (done between 0 and 6 while none is queued), and each job is measured once."""
    server = exported_server(tmp_path)
    server.start()
    agent = None
    try:
        batch = server.submit("slow", ARCHS[:6])
        options = ["--rounds", "20", "--runs", "20", "--warmup", "1", "--max-jobs", "6"]
        agent = Agent(server, tmp_path, "slow", server.enroll("slow"), options)
        seen: set[int] = set()

        def finished() -> bool:
            progress = server.progress(batch)
            if progress["queued"] == 0:
                seen.add(progress["done"])
            return progress["done"] + progress["failed"] == 6

        wait_for(finished, "the group measured", timeout_s=240)
        assert seen & {1, 2, 3, 4, 5}, (seen, agent.log())
        assert agent.log().count("leased 6 job(s)") == 1, agent.log()
        assert server.progress(batch)["done"] == 6
        assert sorted(count for _, count, _ in server.measurements("slow")) == [1] * 6
    finally:
        if agent is not None:
            assert agent.terminate() == 0, agent.log()
        server.stop()
