"""``latfarm measure`` against a live server: results in input order, with NB201 index, statistic, unstable flag
and the batch's conditions, on the terminal and in the CSV."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.client import Client
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Job, JobBatch, JobState, Measurement
from tests.api_support import ADMIN_KEY, add_device, arch

GIVEN = [arch(9), "5", arch(12), "9", "3"]  # 9 twice: one job, its first place
ORDER = [9, 5, 12, 3]
LATENCY_MS = {9: 1.5, 5: 2.5, 12: 3.5}  # 3 fails
UNSTABLE = {5}


def finish_batch(app, batch_id: str) -> None:
    """What agents would report: a measurement per job (statistic median; UNSTABLE flagged), arch 3 failed."""
    with transaction(app.state.sessions) as session:
        batch = session.get(JobBatch, batch_id)
        for job in session.query(Job).filter(Job.batch_id == batch_id):
            index = job.arch.nb201_index
            if index not in LATENCY_MS:
                job.state, job.error = JobState.failed, "failed after 3 attempts; last: timeout"
                continue
            job.state = JobState.done
            session.add(
                Measurement(
                    device_id=job.device_id,
                    arch_id=job.arch_id,
                    job_id=job.id,
                    latency_ms=LATENCY_MS[index],
                    median_ms=LATENCY_MS[index],
                    protocol={"statistic": "median"},
                    unstable=index in UNSTABLE,
                    conditions=batch.conditions,
                    conditions_key="",
                )
            )


def run_measure(monkeypatch, live_api, *args: str):
    url, server = live_api
    add_device_live(server)
    real_submit = Client.submit

    def submit_and_finish(self, *a, **kw):
        batch_id = real_submit(self, *a, **kw)
        finish_batch(server, batch_id)
        return batch_id

    monkeypatch.setattr(Client, "submit", submit_and_finish)
    command = ["measure", "gpu-b2", *GIVEN, "--batch-size", "2", "--server", url, "--key", ADMIN_KEY, *args]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    return result


def add_device_live(server) -> None:
    from fastapi.testclient import TestClient

    with TestClient(server) as client:
        add_device(client, "gpu-b2", precision="fp16")


def test_measure_csv_rows_in_input_order_with_figures_and_conditions(monkeypatch, live_api, tmp_path):
    out = tmp_path / "results.csv"
    run_measure(monkeypatch, live_api, "--out", str(out))
    with out.open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["nb201_index"]) for row in rows] == ORDER
    assert [row["arch"] for row in rows] == [arch(i) for i in ORDER]
    done = rows[:3]
    assert [float(row["latency_ms"]) for row in done] == [LATENCY_MS[i] for i in ORDER[:3]]
    assert {row["statistic"] for row in done} == {"median"}
    assert [row["unstable"] for row in done] == ["False", "True", "False"]
    assert rows[3]["state"] == "failed" and "timeout" in rows[3]["error"] and rows[3]["latency_ms"] == ""
    for row in rows:  # the device's precision, the request's batch size, the reference graph
        assert (row["batch_size"], row["precision"], row["graph"]) == ("2", "fp16", "reference")
        assert (row["resolution"], row["classes"]) == ("32", "10")


def test_measure_prints_in_input_order_and_marks_unstable(monkeypatch, live_api):
    lines = run_measure(monkeypatch, live_api).output.strip().splitlines()
    assert [line.split()[-1] for line in lines[:3]] == [arch(i) for i in ORDER[:3]]
    assert "failed" in lines[3] and "#3 " in lines[3]
    assert "UNSTABLE" in lines[1] and "UNSTABLE" not in lines[0] and "median" in lines[0]


def test_bad_archs_of_a_space_are_refused_naming_the_problem_before_any_request():
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached: the archs are checked first
    cases = [
        (["--space", "fbnet", "k3_e1-skip"], "2 blocks joined by '-', expected 22"),
        (["--space", "fbnet", "-".join(["k3_e1"] * 21 + ["k7_e1"])], "unknown block 'k7_e1' at position 21"),
        (["--space", "fbnet", "5"], "no reference set loaded"),
        (["--space", "ofa", "5"], "unknown search space 'ofa'"),
        (["99999"], "outside 0..15624"),
    ]
    for args, named in cases:
        result = CliRunner().invoke(app, ["measure", "dev", *args, *nowhere])
        assert result.exit_code == 2, result.output
        assert named in " ".join(result.output.replace("│", " ").split()), result.output
