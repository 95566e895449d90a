"""End to end for TFLite: a real ``latfarm serve`` converts NB201 networks with litert-torch (the server's
``tflite`` extra) and a real ``latfarm agent`` with LiteRT (its ``litert`` extra) measures them, for a device of
runtime ``litert`` measured with ``latfarm measure`` and no ``--format``: its runtime's format, tflite."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys

import pytest

from latfarm.predictor import nb201
from tests.conftest import needs_extra
from tests.integration.test_agent_e2e import ADMIN_KEY, QUICK, Agent, Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # each conversion takes 10-30 s

ARCHS = [1]  # an NB201 index: one conversion is the slow part


@pytest.fixture
def server(tmp_path):
    needs_extra("litert_torch", "tflite")
    needs_extra("ai_edge_litert", "litert")
    server = Server(tmp_path / "server")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


def test_a_litert_agent_measures_the_servers_tflite_exports(server, tmp_path):
    server.request("POST", "/v1/devices", {"name": "e2e-litert", "runtime": "litert"})
    agent = Agent(server, tmp_path, "litert", server.enroll("e2e-litert"), QUICK)
    out = tmp_path / "tflite.csv"
    cmd = [sys.executable, "-m", "latfarm.services.cli", "measure", "e2e-litert", *map(str, ARCHS), "--out", str(out)]
    cmd += ["--timeout", "480", "--server", f"http://127.0.0.1:{server.http_port}", "--key", ADMIN_KEY]
    try:
        agent.wait_log("registered as agent")  # online: measure refuses a device with no agent online
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
        assert done.returncode == 0, done.stderr + agent.log()
    finally:
        assert agent.terminate() == 0, agent.log()
    rows = list(csv.DictReader(out.open()))
    assert [(int(r["nb201_index"]), r["state"]) for r in rows] == [(i, "done") for i in ARCHS]
    assert all(float(r["latency_ms"]) > 0 for r in rows)

    measured = server.request("GET", "/v1/measurements?device=e2e-litert")["items"]
    assert sorted(m["nb201_index"] for m in measured) == ARCHS
    assert {(m["runtime"], m["provider"]) for m in measured} == {("litert", "xnnpack")}
    with sqlite3.connect(server.data_dir / "latfarm.db") as db:
        exported = db.execute("select a.arch, f.format from artifacts f join archs a on a.id = f.arch_id").fetchall()
    assert sorted(exported) == sorted((nb201.to_string(nb201.from_official_index(i)), "tflite") for i in ARCHS)
