"""End to end, conditions from request to row: a real ``latfarm serve`` and real ``latfarm agent`` processes.

A device created with batch size 4 gets batch-4 artifacts and measurements that say batch 4, and they measure
slower than batch 1 on this machine; an int8 job runs end to end; an fp16 job runs or fails ``unsupported``."""

from __future__ import annotations

import csv
import json
import sqlite3
import statistics
import subprocess
import sys

import pytest

from tests.integration.test_agent_e2e import ADMIN_KEY, Agent, Server

pytestmark = pytest.mark.slow

# Convolution-heavy cells: their compute, not the per-call overhead, dominates, so batch size shows.
ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
]
MEASURE = ["--rounds", "3", "--runs", "15", "--warmup", "2", "--max-jobs", "4"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("latfarm-conditions"))
    server.start()
    yield server
    server.stop()


def measure(server: Server, tmp_path, device: str, fields: dict, archs: list[str], request: dict | None = None):
    """Create ``device`` with ``fields``, queue ``archs`` (with ``request``'s conditions), measure them with one
    agent, and return the batch's progress with items."""
    server.request("POST", "/v1/devices", {"name": device, **fields})
    body: dict = {"device": device, "archs": archs, **({"conditions": request} if request else {})}
    batch = server.request("POST", "/v1/jobs", body)["id"]
    agent = Agent(server, tmp_path, device, server.enroll(device), MEASURE)
    try:
        server.wait_done(batch, len(archs), timeout_s=300)
    finally:
        assert agent.terminate() == 0, agent.log()
    return server.request("GET", f"/v1/jobs/{batch}?items=true")


def stored(server: Server, device: str) -> dict[str, tuple[float, dict, str, dict]]:
    """arch -> (latency_ms, conditions, conditions_key, artifact settings) of the device's measurements."""
    with sqlite3.connect(server.data_dir / "latfarm.db") as db:
        rows = db.execute(
            "select a.arch, m.latency_ms, m.conditions, m.conditions_key, f.settings from measurements m "
            "join archs a on a.id = m.arch_id join devices d on d.id = m.device_id "
            "join artifacts f on f.sha256 = m.artifact_sha256 where d.name = ?",
            (device,),
        ).fetchall()
    return {arch: (ms, json.loads(c), key, json.loads(s)) for arch, ms, c, key, s in rows}


def test_a_batch_4_device_measures_batch_4_and_slower(server, tmp_path):
    one = measure(server, tmp_path, "e2e-b1", {}, ARCHS)
    four = measure(server, tmp_path, "e2e-b4", {"batch_size": 4}, ARCHS)  # no override: the device's default
    assert one["done"] == four["done"] == len(ARCHS), (one, four)
    assert (one["conditions"]["batch_size"], four["conditions"]["batch_size"]) == (1, 4)
    rows_1, rows_4 = stored(server, "e2e-b1"), stored(server, "e2e-b4")
    assert set(rows_1) == set(rows_4) == set(ARCHS)
    for _, conditions, key, settings in rows_4.values():
        assert {"key": key, **conditions} == four["conditions"] and key == "nb201/32px/10cls/b4/fp32/reference"
        assert settings["batch_size"] == 4
    assert all(settings["batch_size"] == 1 for *_, settings in rows_1.values())
    ratios = [rows_4[arch][0] / rows_1[arch][0] for arch in ARCHS]  # fastest figures: robust to noise
    assert statistics.median(ratios) > 1.5, ratios


def test_int8_runs_and_fp16_runs_or_is_unsupported(server, tmp_path):
    """int8 through ``latfarm measure --precision int8``; fp16 through REST."""
    server.request("POST", "/v1/devices", {"name": "e2e-int8"})
    agent = Agent(server, tmp_path, "int8", server.enroll("e2e-int8"), MEASURE)
    agent.wait_log("registered as agent")  # online: measure refuses a device with no agent online
    out = tmp_path / "int8.csv"
    cmd = [sys.executable, "-m", "latfarm.services.cli", "measure", "e2e-int8", ARCHS[0], "--precision", "int8"]
    cmd += ["--out", str(out), "--timeout", "180"]
    cmd += ["--server", f"http://127.0.0.1:{server.http_port}", "--key", ADMIN_KEY]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
    finally:
        assert agent.terminate() == 0, agent.log()
    int8 = "conditions: precision int8 (nb201/32px/10cls/b1/int8/reference)"  # int8 lines do not read as fp32 ones
    assert done.stdout.splitlines()[0] == int8, done.stdout
    assert [r["state"] for r in csv.DictReader(out.open())] == ["done"], out.read_text()
    (_, conditions, key, _), *_ = stored(server, "e2e-int8").values()
    assert conditions["precision"] == "int8" and key.endswith("/int8/reference")

    fp16 = measure(server, tmp_path, "e2e-fp16", {}, ARCHS[:1], request={"precision": "fp16"})
    assert fp16["conditions"]["precision"] == "fp16"
    (item,) = fp16["items"]
    if item["state"] == "failed":
        assert item["error"].startswith("unsupported"), item
    else:
        assert item["state"] == "done", item
        assert stored(server, "e2e-fp16")[ARCHS[0]][2].endswith("/fp16/reference")
