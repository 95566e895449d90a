"""End to end for a second search space: a real ``latfarm serve`` and a real ``latfarm agent`` measure FBNet archs
queued over REST (a string and an index list) and with ``latfarm measure --space fbnet --sample 1``; the rows say
FBNet's CIFAR-100 conditions, the artifacts are FBNet exports, and ``GET /v1/measurements?space=fbnet`` lists them."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys

import pytest

from latfarm.predictor.spaces import get_space
from latfarm.services.cli.remote import random_archs
from tests.integration.test_agent_e2e import ADMIN_KEY, QUICK, Agent, Server

pytestmark = pytest.mark.slow

FBNET = get_space("fbnet")
KEY = "fbnet/32px/100cls/b1/fp32/reference"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("latfarm-spaces"))
    server.start()
    yield server
    server.stop()


def test_an_agent_measures_fbnet_archs_over_rest_and_the_cli(server, tmp_path):
    first, second = FBNET.sample(2, seed=7)
    server.request("POST", "/v1/devices", {"name": "e2e-fbnet"})
    body = {"device": "e2e-fbnet", "space": "fbnet", "archs": [FBNET.to_string(first), list(second)]}
    batch = server.request("POST", "/v1/jobs", body)["id"]
    agent = Agent(server, tmp_path, "fbnet", server.enroll("e2e-fbnet"), QUICK)
    out = tmp_path / "fbnet.csv"
    cmd = [sys.executable, "-m", "latfarm.services.cli", "measure", "e2e-fbnet", "--space", "fbnet", "--sample", "1"]
    cmd += ["--seed", "3", "--out", str(out), "--timeout", "240"]
    cmd += ["--server", f"http://127.0.0.1:{server.http_port}", "--key", ADMIN_KEY]
    try:
        assert server.wait_done(batch, 2, timeout_s=300)["done"] == 2, server.request("GET", f"/v1/jobs/{batch}")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        assert agent.terminate() == 0, agent.log()
    (row,) = list(csv.DictReader(out.open()))
    (position,) = random_archs("fbnet", 1, seed=3)  # --sample draws from HELP's 5,000 reference archs
    sampled = FBNET.to_string(FBNET.at(position))
    assert (row["arch"], row["state"], row["space"], row["classes"]) == (sampled, "done", "fbnet", "100")
    assert "fbnet_index" in row and float(row["latency_ms"]) > 0

    page = server.request("GET", "/v1/measurements?space=fbnet&device=e2e-fbnet")["items"]
    wanted = {FBNET.to_string(a) for a in (first, second)} | {sampled}
    assert {m["arch"] for m in page} == wanted
    for m in page:
        reference = position if m["arch"] == sampled else None  # the REST archs are uniform draws: no position
        assert m["conditions"]["key"] == KEY and m["index"] == reference and m["nb201_index"] is None
        assert m["latency_ms"] > 0 and m["runtime"] == "onnxruntime" and m["agent_id"]
    assert server.request("GET", "/v1/measurements?space=nb201&device=e2e-fbnet")["items"] == []
    with sqlite3.connect(server.data_dir / "latfarm.db") as db:
        settings = [json.loads(s) for (s,) in db.execute("select settings from artifacts")]
    assert len(settings) == 3 and all((s["space"], s["classes"]) == ("fbnet", 100) for s in settings)
