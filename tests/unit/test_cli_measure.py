"""``latfarm measure`` against a live server: results in input order, with NB201 index, statistic, unstable flag
and the batch's conditions, on the terminal and in the CSV."""

from __future__ import annotations

import csv
import itertools
import re

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from latfarm.predictor.spaces import get_space
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
from tests.api_support import ADMIN, ADMIN_KEY, add_device, arch, interrupt_once_queued, interruptible_cli

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


def add_device_live(server, **fields) -> None:
    """Device ``gpu-b2`` (fp16, unless ``fields`` say otherwise)."""
    from fastapi.testclient import TestClient

    with TestClient(server) as client:
        add_device(client, "gpu-b2", **{"precision": "fp16", **fields})


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


CONDITIONS = "conditions: batch_size 2, precision fp16 (nb201/32px/10cls/b2/fp16/reference)"  # not the defaults


def test_measure_prints_in_input_order_and_marks_unstable(monkeypatch, live_api):
    stdout = run_measure(monkeypatch, live_api).stdout
    assert stdout.splitlines()[0] == CONDITIONS, "stdout holds the results only: the progress bar draws on stderr"
    lines = stdout.strip().splitlines()[1:]
    assert [line.split()[-1] for line in lines[:3]] == [arch(i) for i in ORDER[:3]]
    assert "failed" in lines[3] and "#3 " in lines[3]
    assert "UNSTABLE" in lines[1] and "UNSTABLE" not in lines[0] and "median" in lines[0]


def test_measure_with_every_job_failed_shows_them_and_exits_1(monkeypatch, live_api):
    lines = run_measure(monkeypatch, live_api, archs=["3"], exit_code=1).stdout.strip().splitlines()
    assert lines == [CONDITIONS, f"failed  #3  {arch(3)}  (failed after 3 attempts; last: timeout)"]


def test_measure_with_every_job_failed_writes_the_csv_and_exits_1(monkeypatch, live_api, tmp_path):
    out = tmp_path / "failed.csv"
    written = run_measure(monkeypatch, live_api, "--out", str(out), archs=["3"], exit_code=1)
    assert written.stdout.splitlines() == [CONDITIONS, f"0 measured, 1 failed: {out}"]
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
    """A LiteRT device's jobs are TFLite models; an agent without the litert extra leases none of them: they would
    wait queued with no word of why."""
    url, server = live_api
    add_device_live(server, runtime="litert", precision="fp32")
    with transaction(server.state.sessions) as session:
        device = device_by_name(session, "gpu-b2")
        session.add(
            Agent(
                device_id=device.id, credential_hash="x" * 64, descriptor={"formats": ["onnx"]}, last_heartbeat=utcnow()
            )
        )
    key = ["--server", url, "--key", ADMIN_KEY]
    result = CliRunner().invoke(app, ["measure", "gpu-b2", "1", *key])
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
    with server.state.sessions() as session:
        assert [job.format for job in session.query(Job)] == ["tflite"]


def test_measure_refuses_a_format_the_devices_runtime_does_not_run(live_api):
    """``--format onnx`` on a LiteRT device would store onnxruntime figures under its name: a usage error, nothing
    queued; without --format an onnxruntime device's jobs are ONNX models."""
    url, server = live_api
    add_device_live(server, runtime="litert", precision="fp32")
    key = ["--server", url, "--key", ADMIN_KEY]
    refused = CliRunner().invoke(app, ["measure", "gpu-b2", "1", "--format", "onnx", "--no-wait", *key])
    assert refused.exit_code == 2, refused.output
    message = " ".join(refused.output.replace("│", " ").split())
    assert (
        "Invalid value for --format: litert devices are measured in tflite models, not onnx: omit the format, or "
        "measure onnx models on a device of runtime onnxruntime (nothing was queued)"
    ) in message
    with TestClient(server) as client:
        add_device(client, "cpu-onnx")
    queued = CliRunner().invoke(app, ["measure", "cpu-onnx", "1", "--no-wait", *key])
    assert queued.exit_code == 0, queued.output
    with server.state.sessions() as session:
        assert [(job.device.name, job.format) for job in session.query(Job)] == [("cpu-onnx", "onnx")]


def test_cancel_command_cancels_a_batchs_unfinished_jobs(live_api):
    url, server = live_api
    add_device_live(server)
    with Client(url, ADMIN_KEY) as client:
        batch_id, other = client.submit("gpu-b2", [1, 2, 3]), client.submit("gpu-b2", [4])
    result = CliRunner().invoke(app, ["cancel", batch_id, other, "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 0, result.output
    assert f"cancelled 3 job(s) of batch {batch_id}" in result.stdout  # a line per batch
    assert f"cancelled 1 job(s) of batch {other}" in result.stdout
    unknown = CliRunner().invoke(app, ["cancel", "0" * 32, "--server", url, "--key", ADMIN_KEY])
    assert unknown.exit_code == 1 and f"unknown job batch {'0' * 32!r}" in unknown.output
    assert "known devices" not in unknown.output


def test_a_wait_past_its_timeout_counts_the_jobs_still_pending(live_api):
    url, server = live_api
    add_device_live(server)
    with Client(url, ADMIN_KEY) as client:
        one, two = client.submit("gpu-b2", [1]), client.submit("gpu-b2", [2, 3])
        for batches, pending in (([one], "1 job"), ([one, two], "3 jobs")):
            with pytest.raises(TimeoutError, match=rf": {pending} still pending \(latfarm cancel "):
                client.wait_all(batches, timeout=0, poll_s=0)


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
        (["[0,1,2,3,4]"], "archs[0]: nb201: op vector must have 6 entries, got 5"),
        (["--space", "fbnet", "[0,1,2]"], "archs[0]: fbnet: arch has 3 entries, expected 22"),
        (["-".join(["k3_e1"] * 22)], "expected 3 node groups joined by '+', found 1; it is an arch of space fbnet"),
    ]
    for args, named in cases:
        result = CliRunner().invoke(app, ["measure", "dev", *args, *nowhere], env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output  # a usage error, as predict's
        assert "Invalid value for 'ARCHS...': " in result.output and named in result.output, result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--random", "15626"], "'--random' / '--sample': must be at most 15625, the size of the nb201 reference set"),
        (
            ["--space", "fbnet", "--sample", "5001"],
            "must be at most 5000, the size of the fbnet reference set, got 5001",
        ),
        (["--from", "EMPTY"], "--from: EMPTY holds no arch (one per line, # comments)"),
    ],
)
def test_more_random_archs_than_the_space_holds_or_an_empty_from_file_is_a_usage_error(tmp_path, args, said):
    empty = tmp_path / "archs.txt"
    empty.write_text("# none yet\n\n")
    args = [str(empty) if arg == "EMPTY" else arg for arg in args]
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached: checked first
    result = CliRunner().invoke(app, ["measure", "dev", *args, *nowhere], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert said.replace("EMPTY", str(empty)) in " ".join(result.output.replace("│", "").split())


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
    with pytest.raises(typer.BadParameter, match="must be at most 5000, the size of the fbnet reference set, got 5001"):
        random_archs("fbnet", 5001, seed=0)
    shown = " ".join(CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "distinct archs of its reference set (NB201: official indices; FBNet: HELP's 5,000)" in shown
    assert "a seed draws the same archs each run (a smaller N its first ones). [default: 0]" in shown


def test_measure_random_alone_marks_its_jobs_drawn_at_random(live_api, tmp_path):
    """--random N: its archs are queued as their own batch, declared drawn at random (their measurements calibrate
    adaptations); archs given are chosen, their batch not. ``results --out`` of the batches says which in its last
    column, as one run."""
    url, server = live_api
    add_device_live(server)
    runs = {"random": ["--random", "12"], "given": ["1", "2"], "both": ["3", "--random", "2", "--seed", "1"]}
    drawn, shown = {}, {}
    for name, args in runs.items():
        command = ["measure", "gpu-b2", *args, "--no-wait", "--server", url, "--key", ADMIN_KEY]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        batch_ids = re.findall(r"batch ([0-9a-f]{32})", result.output)
        assert result.output.strip().endswith(f"results: latfarm results {' '.join(batch_ids)}"), result.output
        with server.state.sessions() as session:
            jobs = [session.query(Job).filter(Job.batch_id == batch_id).all() for batch_id in batch_ids]
            drawn[name] = [[job.drawn_at_random for job in batch] for batch in jobs]
        out = tmp_path / f"{name}.csv"
        command = ["results", *batch_ids, "--no-wait", "--out", str(out), "--server", url, "--key", ADMIN_KEY]
        CliRunner().invoke(app, command)  # exit 1: nothing measured yet, the CSV written all the same
        with out.open() as file:
            shown[name] = [row["drawn_at_random"] == "True" for row in csv.DictReader(file)]
    assert drawn == {"random": [[True] * 12], "given": [[False] * 2], "both": [[False], [True] * 2]}
    assert shown == {"random": [True] * 12, "given": [False] * 2, "both": [False, True, True]}
    assert "(1 job) and batch " in runs_output(url, ["3", "--random", "2", "--seed", "1"])  # one line for both


def runs_output(url: str, args: list[str]) -> str:
    """``latfarm measure gpu-b2 ARGS --no-wait``'s output."""
    command = ["measure", "gpu-b2", *args, "--no-wait", "--server", url, "--key", ADMIN_KEY]
    return CliRunner().invoke(app, command).output


def test_the_terminal_marks_archs_drawn_at_random_with_a_legend(monkeypatch, live_api):
    """As the CSV's drawn_at_random column and the API do: a mark column once some were, and the legend last."""
    from latfarm.services.cli import measure_results
    from latfarm.services.cli.measure_results import RANDOM_LEGEND, RANDOM_MARK

    drawn = random_archs("nb201", 2, seed=1)
    conditions, *lines = run_measure(
        monkeypatch, live_api, "--random", "2", "--seed", "1", archs=["9"]
    ).stdout.splitlines()
    assert conditions == CONDITIONS and len(lines) == 4 and lines[-1] == RANDOM_LEGEND
    marks = [f" {RANDOM_MARK}  |" in line for line in lines[:3]]  # the column before the arch (|op~0|+...)
    assert marks == [False, True, True] and f"#{drawn[0]} " in lines[1], lines
    # no random arch: no column, no legend
    assert measure_results.lines([{"arch": "|a|", "index": 9, "state": "queued"}]) == ["queued  #9  |a|"]


def test_the_conditions_that_are_not_the_defaults_lead_the_results():
    """fp32 and int8 lines look alike: the conditions line tells them apart; a space's own defaults say nothing."""
    from latfarm.services.cli.measure_results import conditions_line
    from latfarm.services.domain.conditions import Conditions

    int8 = Conditions(precision="int8")
    assert conditions_line({**int8.to_dict(), "key": int8.key}) == f"conditions: precision int8 ({int8.key})"
    for default in (Conditions(), Conditions().for_space("fbnet")):
        assert conditions_line({**default.to_dict(), "key": default.key}) == ""
    assert conditions_line({}) == ""  # a server that sends none


def test_the_terminals_columns_are_as_wide_as_their_widest_figure():
    """An unstable figure longer than any fixed width still leaves the indices and archs in one column each."""
    from latfarm.services.cli.measure_results import lines

    items = [
        {"arch": "|a|", "index": 9, "state": "done", "latency_ms": 21.22771, "statistic": "median", "unstable": True},
        {"arch": "|b|", "index": 12345, "state": "done", "latency_ms": 1.5, "statistic": "median"},
        {"arch": "|c|", "index": None, "state": "failed", "error": "timeout"},
    ]
    assert lines(items) == [
        "21.2277 ms median  UNSTABLE  #9      |a|",
        "1.5000 ms median             #12345  |b|",
        "failed                               |c|  (timeout)",
    ]
    assert lines([{"arch": "|d|", "state": "queued"}]) == ["queued  |d|"]  # no index at all: no column


def test_a_mixed_measures_random_archs_calibrate_and_its_chosen_ones_do_not(live_api, tmp_path, help_dir, monkeypatch):
    """End to end: ``measure 1 2 3 --random N`` measured by an agent through the real queue, then an adaptation:
    its calibrating archs are the N random ones (less any it picked as samples), none of the three chosen."""
    from types import SimpleNamespace

    from latfarm.predictor.calibration import MIN_CALIBRATION_ARCHS
    from latfarm.predictor.help_data import load_help
    from latfarm.services.domain import adaptation
    from tests.unit.test_api_adapt import SAMPLES, _agent_measures

    url, server = live_api
    add_device_live(server)
    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    api = SimpleNamespace(app=server)  # what the test agent reads: the app's sessions
    real_submit = Client.submit

    def submit_and_measure(self, *a, **kw):
        batch_id = real_submit(self, *a, **kw)
        _agent_measures(api, tmp_path, "gpu-b2", truth)
        return batch_id

    monkeypatch.setattr(Client, "submit", submit_and_measure)
    n, chosen = MIN_CALIBRATION_ARCHS + 2, [1, 2, 3]
    drawn = random_archs("nb201", n, seed=5)
    assert not set(drawn) & set(chosen)
    args = [*map(str, chosen), "--random", str(n), "--seed", "5", "--wait-for-agent", "--server", url]
    measured = CliRunner().invoke(app, ["measure", "gpu-b2", *args, "--key", ADMIN_KEY])
    assert measured.exit_code == 0, measured.output
    with server.state.sessions() as session:
        flagged = {job.arch.nb201_index: job.drawn_at_random for job in session.query(Job)}
    assert flagged == {**dict.fromkeys(chosen, False), **dict.fromkeys(drawn, True)}
    with Client(url, ADMIN_KEY) as client:
        client.adapt("gpu-b2", samples=SAMPLES, wait=False)
        assert _agent_measures(api, tmp_path, "gpu-b2", truth) == SAMPLES
        assert adaptation.advance_all(server.state.sessions, server.state.predictions.predictor_loader) == 1
        metrics = client.adaptation("gpu-b2")["metrics"]
    with server.state.sessions() as session:
        (samples,) = (set(row.sample_archs) for row in session.query(Adaptation))
    assert metrics["calibration_archs"] == len(set(drawn) - samples) >= MIN_CALIBRATION_ARCHS


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
        waits = [] if "--no-wait" in args else ["--wait-for-agent"]  # together they are refused before --out
        command = ["measure", "gpu-b2", "1", *waits, *args, "--server", url, "--key", ADMIN_KEY]
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


def test_measures_fixed_set_options_are_refused_before_any_request(live_api):
    """``--statistic``, ``--format``, ``--precision`` and ``--graph`` (the archs' space's graphs) are usage errors
    naming the flag, with or without waiting; nothing is queued."""
    url, server = live_api
    add_device_live(server)
    cases = [
        (["--statistic", "mean"], "'--statistic': must be one of min, median, got 'mean'"),
        (["--format", "tflit"], "'--format': must be one of onnx, tflite, got 'tflit'"),
        (["--precision", "fp64"], "'--precision': must be one of fp32, fp16, int8, got 'fp64'"),
        (["--graph", "fused"], "'--graph': must be one of reference, pruned (the graphs of nb201), got 'fused'"),
    ]
    for (args, line), wait in itertools.product(cases, ["--wait-for-agent", "--no-wait"]):
        command = ["measure", "gpu-b2", "1", wait, *args, "--server", url, "--key", ADMIN_KEY]
        result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert f"Invalid value for {line}" in " ".join(result.output.replace("│", "").split()), result.output
    with server.state.sessions() as session:
        assert session.query(Job).count() == 0


BOUNDED = [  # a command's option out of its bounds, and the request field the server refuses for that value
    (["measure", "gpu-b2", "1", "--rounds", "1001"], "/v1/jobs", {"protocol": {"rounds": 1001}}),
    (["measure", "gpu-b2", "1", "--runs", "0"], "/v1/jobs", {"protocol": {"runs_per_round": 0}}),
    (["measure", "gpu-b2", "1", "--warmup", "1001"], "/v1/jobs", {"protocol": {"warmup_runs": 1001}}),
    (["measure", "gpu-b2", "1", "--batch-size", "1025"], "/v1/jobs", {"conditions": {"batch_size": 1025}}),
    (["device", "add", "d2", "--resolution", "2000"], "/v1/devices", {"name": "d2", "resolution": 2000}),
    (["device", "add", "d2", "--classes", "0"], "/v1/devices", {"name": "d2", "classes": 0}),
    (["device", "enroll", "gpu-b2", "--max-uses", "100001"], "/v1/devices/gpu-b2/enrollments", {"max_uses": 100001}),
    (["device", "enroll", "gpu-b2", "--expires-in", "0"], "/v1/devices/gpu-b2/enrollments", {"expires_in_s": 0}),
]


@pytest.mark.parametrize(("args", "path", "body"), BOUNDED)
def test_a_value_the_server_refuses_for_its_bounds_the_command_refuses_first_in_the_same_words(api, args, path, body):
    """The option's bounds are the request field's (one home): exit 2 before any request, the server's message."""
    add_device(api, "gpu-b2")
    job = {"device": "gpu-b2", "archs": [1]} if path == "/v1/jobs" else {}
    refused = api.post(path, json={**job, **body}, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached
    result = CliRunner().invoke(app, [*args, *nowhere], env={"COLUMNS": "300"})
    shown = " ".join(result.output.replace("│", "").split())
    assert (
        result.exit_code == 2 and f"Invalid value for '{args[-2]}': {refused.json()['errors'][0]['message']}" in shown
    )
