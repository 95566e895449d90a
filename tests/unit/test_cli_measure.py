"""``latfarm measure`` against a live server: results in input order, with NB201 index, statistic, unstable flag
and the batch's conditions, on the terminal and in the CSV."""

from __future__ import annotations

import csv
import itertools
import re

import pytest
from typer.testing import CliRunner

from latfarm.predictor.spaces import ArchError, get_space
from latfarm.services.cli import app
from latfarm.services.cli.remote import random_archs
from latfarm.services.client import Client
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import (
    Adaptation,
    AdaptState,
    Agent,
    Job,
    JobBatch,
    JobState,
    Measurement,
    utcnow,
)
from tests.api_support import ADMIN_KEY, add_device, arch, interrupt_once_queued, interruptible_cli

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


def run_measure(monkeypatch, live_api, *args: str, archs: list[str] = GIVEN, exit_code: int = 0):
    """``latfarm measure`` of ``archs`` on gpu-b2, its jobs finished by ``finish_batch``; its exit status checked."""
    url, server = live_api
    add_device_live(server)
    real_submit = Client.submit

    def submit_and_finish(self, *a, **kw):
        batch_id = real_submit(self, *a, **kw)
        finish_batch(server, batch_id)
        return batch_id

    monkeypatch.setattr(Client, "submit", submit_and_finish)
    command = ["measure", "gpu-b2", *archs, "--batch-size", "2", "--server", url, "--key", ADMIN_KEY, *args]
    command.append("--wait-for-agent")  # no agent here: the test finishes the jobs itself
    result = CliRunner().invoke(app, command)
    assert result.exit_code == exit_code, result.output
    return result


def add_device_live(server) -> None:
    from fastapi.testclient import TestClient

    with TestClient(server) as client:
        add_device(client, "gpu-b2", precision="fp16")


def add_adapted_device_live(server, samples: int = 4) -> None:
    """``add_device_live``, and an active NB201 adaptation of ``samples`` archs under the device's conditions."""
    add_device_live(server)
    with transaction(server.state.sessions) as session:
        device = device_by_name(session, "gpu-b2")
        key = conditions_of(device).for_space("nb201").key
        session.add(
            Adaptation(
                device_id=device.id, state=AdaptState.active, samples=samples, conditions_key=key, activated_at=utcnow()
            )
        )


def test_measure_csv_rows_in_input_order_with_figures_and_conditions(monkeypatch, live_api, tmp_path):
    out = tmp_path / "results.csv"
    run_measure(monkeypatch, live_api, "--out", str(out))
    with out.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == [
        *("arch", "nb201_index", "state", "latency_ms", "statistic", "unstable", "attempts", "error"),
        *("batch_size", "precision", "graph", "resolution", "classes", "space", "drawn_at_random"),
    ]  # as docs/cli.md lists them
    assert {row["drawn_at_random"] for row in rows} == {"False"}  # archs given: chosen
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
    stdout = run_measure(monkeypatch, live_api).stdout
    assert stdout.splitlines()[0].strip(), "stdout holds the results only: the progress bar draws on stderr"
    lines = stdout.strip().splitlines()
    assert [line.split()[-1] for line in lines[:3]] == [arch(i) for i in ORDER[:3]]
    assert "failed" in lines[3] and "#3 " in lines[3]
    assert "UNSTABLE" in lines[1] and "UNSTABLE" not in lines[0] and "median" in lines[0]


def test_measure_with_every_job_failed_shows_them_and_exits_1(monkeypatch, live_api):
    lines = run_measure(monkeypatch, live_api, archs=["3"], exit_code=1).stdout.strip().splitlines()
    assert lines == [f"{'failed':<24} {'#3':<7} {arch(3)}  (failed after 3 attempts; last: timeout)"]


def test_measure_with_every_job_failed_writes_the_csv_and_exits_1(monkeypatch, live_api, tmp_path):
    out = tmp_path / "failed.csv"
    written = run_measure(monkeypatch, live_api, "--out", str(out), archs=["3"], exit_code=1)
    assert written.stdout.strip() == f"0 measured, 1 failed: {out}"
    assert out.read_text().count("failed after 3 attempts") == 1


def test_measure_on_a_device_with_no_agent_online_says_so_and_queues_nothing(live_api):
    url, server = live_api
    add_device_live(server)
    result = CliRunner().invoke(app, ["measure", "gpu-b2", "1", "2", "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 1
    assert "no agent of device 'gpu-b2' is online" in result.output and "latfarm agent --server" in result.output
    assert "nothing was queued" in result.output and "--wait-for-agent" in result.output
    assert "wait queued" not in result.output  # nothing is queued: no jobs wait
    assert "LATFARM_AGENT_ENROLL=TOKEN latfarm agent" in result.output and "--enroll" not in result.output
    with server.state.sessions() as session:
        assert session.query(Job).count() == 0
    queued = CliRunner().invoke(app, ["measure", "gpu-b2", "1", "--no-wait", "--server", url, "--key", ADMIN_KEY])
    assert queued.exit_code == 0 and "queued batch" in queued.stdout and "is online" in queued.stderr
    assert "(1 job);" in queued.stdout


def test_measure_tflite_when_no_online_agent_runs_tflite_says_so_and_queues_nothing(live_api):
    """An agent without the litert extra leases no TFLite job: they would wait queued with no word of why."""
    url, server = live_api
    add_device_live(server)
    with transaction(server.state.sessions) as session:
        device = device_by_name(session, "gpu-b2")
        session.add(
            Agent(
                device_id=device.id, credential_hash="x" * 64, descriptor={"formats": ["onnx"]}, last_heartbeat=utcnow()
            )
        )
    key = ["--server", url, "--key", ADMIN_KEY]
    result = CliRunner().invoke(app, ["measure", "gpu-b2", "1", "--format", "tflite", *key])
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1, line
    assert "no agent of device 'gpu-b2' online runs tflite models (they run: onnx); nothing was queued" in line
    assert "an agent with the litert extra runs them" in line and "--wait-for-agent" in line
    with server.state.sessions() as session:
        assert session.query(Job).count() == 0
    queued = CliRunner().invoke(app, ["measure", "gpu-b2", "1", "--format", "tflite", "--no-wait", *key])
    assert queued.exit_code == 0 and "queued batch" in queued.stdout
    assert "runs tflite models (they run: onnx), so its jobs wait queued" in queued.stderr


def test_cancel_command_cancels_a_batchs_unfinished_jobs(live_api):
    url, server = live_api
    add_device_live(server)
    with Client(url, ADMIN_KEY) as client:
        batch_id = client.submit("gpu-b2", [1, 2, 3])
    result = CliRunner().invoke(app, ["cancel", batch_id, "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 0, result.output
    assert f"cancelled 3 job(s) of batch {batch_id}" in result.stdout
    unknown = CliRunner().invoke(app, ["cancel", "0" * 32, "--server", url, "--key", ADMIN_KEY])
    assert unknown.exit_code == 1 and f"unknown job batch {'0' * 32!r}" in unknown.output
    assert "known devices" not in unknown.output


def test_ctrl_c_while_waiting_cancels_the_batch(live_api):
    url, server = live_api
    add_device_live(server)
    proc = interruptible_cli("measure", "gpu-b2", "1", "2", "--wait-for-agent", "--server", url, "--key", ADMIN_KEY)
    err = interrupt_once_queued(server, proc, 2)
    assert proc.returncode == 130, err
    assert "interrupted; cancelled 2 unfinished job(s)" in err
    with server.state.sessions() as session:
        assert {job.state for job in session.query(Job)} == {JobState.cancelled}


def test_bad_archs_of_a_space_are_refused_naming_the_problem_before_any_request():
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached: the archs are checked first
    cases = [
        (["--space", "fbnet", "k3_e1-skip"], "2 blocks joined by '-', expected 22"),
        (["--space", "fbnet", "-".join(["k3_e1"] * 21 + ["k7_e1"])], "unknown block 'k7_e1' at position 21"),
        (["--space", "fbnet", "5000"], "fbnet: reference position 5000 is outside 0..4999"),
        (["99999"], "nb201: reference position 99999 is outside 0..15624"),
        (["-".join(["k3_e1"] * 22)], "expected 3 node groups joined by '+', found 1; it is an arch of space fbnet"),
    ]
    for args, named in cases:
        result = CliRunner().invoke(app, ["measure", "dev", *args, *nowhere])
        assert result.exit_code == 1, result.output  # one line, as predict's
        assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("latfarm measure: ")
        assert named in result.output, result.output


def test_measure_and_adapt_explain_an_unknown_device_and_a_wrong_key_in_one_line(live_api):
    url, server = live_api
    add_device_live(server)
    for command in (["measure", "nosuchdev", "0"], ["adapt", "nosuchdev", "--samples", "5"]):
        result = CliRunner().invoke(app, [*command, "--server", url, "--key", ADMIN_KEY])
        assert result.exit_code == 1, result.output
        assert "unknown device 'nosuchdev'; known devices: gpu-b2" in result.output and "404" not in result.output
    wrong = CliRunner().invoke(app, ["measure", "gpu-b2", "0", "--server", url, "--key", "wrong"])
    assert wrong.exit_code == 1 and "in LATFARM_API_KEY (or --key)" in wrong.output and "401" not in wrong.output


def test_measure_takes_fbnet_positions_in_helps_reference_set(live_api):
    url, server = live_api
    add_device_live(server)
    command = ["measure", "gpu-b2", "--space", "fbnet", "0", "17", "4999", "--no-wait", "--server", url]
    result = CliRunner().invoke(app, [*command, "--key", ADMIN_KEY])
    assert result.exit_code == 0, result.output
    batch_id = result.output.split("queued batch ")[1].split()[0]
    fbnet = get_space("fbnet")
    with server.state.sessions() as session:
        jobs = session.query(Job).filter(Job.batch_id == batch_id).all()
        archs = {(job.arch.space, job.arch.reference_index, job.arch.arch) for job in jobs}
    assert archs == {("fbnet", p, fbnet.to_string(fbnet.reference_set()[p])) for p in (0, 17, 4999)}


def test_the_summary_counts_unstable_results():
    from latfarm.services.cli.measure_results import summary

    busy = [{"state": "done", "latency_ms": 1.0, "unstable": True}] * 23
    assert summary(busy) == (
        "23 measured (23 unstable: the device was busy, its round medians over 5% apart even after a retry), 0 failed"
    )
    mixed = [{"state": "done", "unstable": False}, {"state": "failed"}, {"state": "cancelled"}]
    assert summary(mixed) == "1 measured, 1 failed"


def test_random_draws_distinct_reference_archs_in_every_space_with_a_reference_set():
    """--random N: positions of the space's reference set (FBNet's too, so results match HELP's data), seeded."""
    for space in ("nb201", "fbnet"):
        size = len(get_space(space).reference_set())
        drawn = random_archs(space, 50, seed=3)
        assert len(set(drawn)) == 50 and all(isinstance(p, int) and 0 <= p < size for p in drawn), space
        assert drawn == random_archs(space, 50, seed=3) != random_archs(space, 50, seed=4)
        assert random_archs(space, 20, seed=3) == drawn[:20], space  # as --help and docs/cli.md say
    assert len(get_space("fbnet").reference_set()) == 5000
    with pytest.raises(ArchError, match="the fbnet reference set holds 5000 archs"):
        random_archs("fbnet", 5001, seed=0)
    shown = " ".join(CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "distinct archs of its reference set (NB201: official indices; FBNet: HELP's 5,000)" in shown
    assert "a seed draws the same archs each run (a smaller N its first ones). [default: 0]" in shown


def test_measure_random_alone_marks_its_jobs_drawn_at_random(live_api, tmp_path):
    """--random N alone: the batch is declared drawn at random (its measurements calibrate adaptations); archs given,
    with --random or not, are chosen, so their batch is not. ``results --out`` says which in its last column."""
    url, server = live_api
    add_device_live(server)
    runs = {"random": ["--random", "12"], "given": ["1", "2"], "both": ["3", "--random", "2", "--seed", "1"]}
    drawn, shown = {}, {}
    for name, args in runs.items():
        command = ["measure", "gpu-b2", *args, "--no-wait", "--server", url, "--key", ADMIN_KEY]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        batch_id = result.output.split("queued batch ")[1].split()[0]
        with server.state.sessions() as session:
            drawn[name] = [job.drawn_at_random for job in session.query(Job).filter(Job.batch_id == batch_id)]
        out = tmp_path / f"{name}.csv"
        command = ["results", batch_id, "--no-wait", "--out", str(out), "--server", url, "--key", ADMIN_KEY]
        CliRunner().invoke(app, command)  # exit 1: nothing measured yet, the CSV written all the same
        with out.open() as file:
            shown[name] = [row["drawn_at_random"] == "True" for row in csv.DictReader(file)]
    assert drawn == shown == {"random": [True] * 12, "given": [False] * 2, "both": [False] * 3}


def test_an_out_no_csv_can_be_written_to_is_refused_before_anything_is_queued(live_api, tmp_path):
    """``--out`` in a missing folder, at a folder, or with ``--no-wait`` (no results to write) is one usage error
    naming it, before any job is queued; the CSV is not left to fail after the measurements."""
    url, server = live_api
    add_device_live(server)
    cases = [
        (["--out", str(tmp_path / "missing" / "x.csv")], f"no folder {tmp_path / 'missing'}"),
        (["--out", str(tmp_path)], "is a folder; give a file name"),
        (["--out", str(tmp_path / "x.csv"), "--no-wait"], "--no-wait does not wait for the results"),
    ]
    for args, named in cases:
        command = ["measure", "gpu-b2", "1", "--wait-for-agent", *args, "--server", url, "--key", ADMIN_KEY]
        result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})  # no path wrapped inside rich's box
        shown = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and "Invalid value for --out" in shown, result.output
        assert named in shown and "(nothing was queued)" in shown, result.output
    with server.state.sessions() as session:
        assert session.query(Job).count() == 0


def test_a_csv_that_cannot_be_written_after_measuring_says_where_the_results_are(monkeypatch, live_api, tmp_path):
    """The folder of ``--out`` gone while the batch ran: one line naming the file and the batch's REST route (the
    results are stored on the server), exit 1, no traceback."""
    url, server = live_api
    add_device_live(server)
    folder = tmp_path / "results"
    folder.mkdir()
    real_submit = Client.submit

    def submit_finish_and_remove_the_folder(self, *a, **kw):
        batch_id = real_submit(self, *a, **kw)
        finish_batch(server, batch_id)
        folder.rmdir()
        return batch_id

    monkeypatch.setattr(Client, "submit", submit_finish_and_remove_the_folder)
    out = folder / "x.csv"
    command = ["measure", "gpu-b2", "9", "--wait-for-agent", "--out", str(out), "--server", url, "--key", ADMIN_KEY]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # after the note that no agent is online
    assert "Traceback" not in result.output
    assert last.startswith(f"latfarm measure: cannot write {out}: No such file or directory")
    assert re.search(r"the results are stored: latfarm results [0-9a-f]+ --out FILE$", last)


def test_the_servers_refusal_of_an_option_names_its_flag(live_api):
    """A value only the server checks (``--statistic``, ``--format``, ``--precision``) is refused naming the flag,
    not the request field (``protocol.statistic``); nothing is queued."""
    url, server = live_api
    add_device_live(server)
    cases = [
        (["--statistic", "mean"], "latfarm measure: --statistic: Input should be 'min' or 'median'"),
        (["--format", "tflit"], "latfarm measure: --format: Input should be 'onnx' or 'tflite'"),
        (["--precision", "fp64"], "latfarm measure: --precision: must be one of fp32, fp16, int8"),
        (["--graph", "fused"], "latfarm measure: --graph: must be one of reference, pruned"),
        (["--batch-size", "5000"], "latfarm measure: --batch-size: must be between 1 and 1024, got 5000"),
    ]
    for (args, line), wait in itertools.product(cases, ["--wait-for-agent", "--no-wait"]):
        result = CliRunner().invoke(app, ["measure", "gpu-b2", "1", wait, *args, "--server", url, "--key", ADMIN_KEY])
        (only,) = result.output.strip().splitlines()  # no note that its jobs wait queued: none were
        assert result.exit_code == 1 and only.startswith(line), result.output
    with server.state.sessions() as session:
        assert session.query(Job).count() == 0
