"""``latfarm adapt`` against a live server: refuses with no agent online as ``measure`` does, Ctrl-C and
``--cancel`` cancel the adaptation and its jobs, ``--samples`` follows the adapt loop's rule."""

from __future__ import annotations

import re
import time

import numpy as np
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.core.security import hash_secret
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Adaptation, Agent, Job, JobState
from tests.api_support import (
    ADMIN_KEY,
    LIVE_GRPC_PORT,
    app_on,
    interrupt_once_queued,
    interruptible_cli,
    make_settings,
    serving,
)
from tests.unit.test_cli_measure import add_adapted_device_live, add_device_live


def _invoke(url: str, *args: str):
    return CliRunner().invoke(app, [*args, "--server", url, "--key", ADMIN_KEY])


def test_adapt_with_no_agent_online_says_how_to_start_one_and_starts_nothing(live_api):
    url, server = live_api
    add_device_live(server)
    result = _invoke(url, "adapt", "gpu-b2", "--samples", "5")
    assert result.exit_code == 1, result.output
    assert "latfarm adapt: no agent of device 'gpu-b2' is online" in result.output
    assert f"LATFARM_AGENT_ENROLL=TOKEN latfarm agent --server HOST:{LIVE_GRPC_PORT} " in result.output
    assert "--wait-for-agent" in result.output
    assert "(a token: latfarm device enroll gpu-b2)" in result.output and "/v1/" not in result.output
    with server.state.sessions() as session:
        assert session.query(Adaptation).count() == session.query(Job).count() == 0

    with transaction(server.state.sessions) as session:  # an enrolled agent, offline: no new token needed
        session.add(Agent(device_id=device_by_name(session, "gpu-b2").id, credential_hash=hash_secret("s")))
    again = _invoke(url, "adapt", "gpu-b2", "--samples", "5")
    assert again.exit_code == 1 and f"start its agent: latfarm agent --server HOST:{LIVE_GRPC_PORT} " in again.output
    assert "--enroll" not in again.output


def test_adapt_cancel_and_cancel_of_an_adaptation_id(live_api):
    url, server = live_api
    add_device_live(server)
    started = _invoke(url, "adapt", "gpu-b2", "--samples", "4", "--no-wait")
    assert started.exit_code == 0, started.output
    assert "latfarm adapt gpu-b2 --cancel" in started.stdout and "is online" in started.stderr
    with server.state.sessions() as session:
        adaptation_id = session.query(Adaptation).one().id

    wrong = _invoke(url, "cancel", adaptation_id)
    assert wrong.exit_code == 1 and "latfarm adapt DEVICE --cancel" in wrong.output
    cancelled = _invoke(url, "adapt", "gpu-b2", "--cancel")
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.strip() == f"cancelled adaptation {adaptation_id} of gpu-b2 and 4 unfinished job(s)"
    nothing = _invoke(url, "adapt", "gpu-b2", "--cancel")
    assert nothing.exit_code == 1 and "no nb201 adaptation measuring to cancel (latest: cancelled)" in nothing.output
    with server.state.sessions() as session:
        assert {job.state for job in session.query(Job)} == {JobState.cancelled}


def test_no_wait_names_the_command_that_shows_its_progress(live_api):
    """``--no-wait`` names ``--status`` (with ``--space`` for a space but NB201), not a REST route; ``--status`` shows
    the latest adaptation in one line, whatever its state, and starts none."""
    url, server = live_api
    add_adapted_device_live(server, samples=4)
    active = _invoke(url, "adapt", "gpu-b2", "--status")
    assert active.exit_code == 0, active.output
    assert active.stdout == "nb201 predictor of gpu-b2 active: 4 measured archs, fit error 0.0%\n"  # no metrics stored
    none = _invoke(url, "adapt", "gpu-b2", "--status", "--space", "fbnet")
    assert (
        none.stdout == "no fbnet adaptation of gpu-b2 yet; start one: latfarm adapt gpu-b2 --samples K --space fbnet\n"
    )

    started = _invoke(url, "adapt", "gpu-b2", "--samples", "3", "--no-wait", "--space", "fbnet")
    assert started.exit_code == 0, started.output
    assert "/v1/" not in started.output
    assert started.stdout.strip().endswith(
        "progress: latfarm adapt gpu-b2 --status --space fbnet; cancel: latfarm adapt gpu-b2 --cancel --space fbnet"
    )
    with server.state.sessions() as session:
        adaptation_id = session.query(Adaptation).filter_by(state="measuring").one().id
    measuring = _invoke(url, "adapt", "gpu-b2", "--status", "--space", "fbnet")
    assert measuring.exit_code == 0, measuring.output
    assert measuring.stdout == f"fbnet adaptation {adaptation_id} of gpu-b2: measuring (0/3 measured, 0 failed)\n"
    _invoke(url, "adapt", "gpu-b2", "--cancel", "--space", "fbnet")
    cancelled = _invoke(url, "adapt", "gpu-b2", "--status", "--space", "fbnet")
    assert cancelled.stdout.startswith(f"fbnet adaptation {adaptation_id} of gpu-b2: cancelled"), cancelled.output
    assert "still predicts" not in cancelled.output  # no fbnet one is active
    with server.state.sessions() as session:
        active_id = session.query(Adaptation).filter_by(state="active").one().id
    _invoke(url, "adapt", "gpu-b2", "--samples", "3", "--no-wait")
    _invoke(url, "adapt", "gpu-b2", "--cancel")
    attempt = _invoke(url, "adapt", "gpu-b2", "--status")  # the latest attempt cancelled, the active one serving
    assert attempt.stdout.endswith(
        f": cancelled: cancelled on request; the active nb201 predictor (adaptation {active_id}) still predicts\n"
    ), attempt.output
    both = _invoke(url, "adapt", "gpu-b2", "--status", "--cancel")
    assert both.exit_code == 2 and "drop one of them" in both.output
    with server.state.sessions() as session:
        assert session.query(Adaptation).count() == 3  # --status started none


def test_ctrl_c_while_adapting_cancels_the_adaptation(live_api):
    url, server = live_api
    add_device_live(server)
    proc = interruptible_cli(
        "adapt", "gpu-b2", "--samples", "3", "--wait-for-agent", "--server", url, "--key", ADMIN_KEY
    )
    err = interrupt_once_queued(server, proc, 3)
    assert proc.returncode == 130, err
    assert "interrupted; cancelled adaptation" in err and "3 unfinished job(s)" in err
    with server.state.sessions() as session:
        assert session.query(Adaptation).one().state.value == "cancelled"
        assert {job.state for job in session.query(Job)} == {JobState.cancelled}
    again = _invoke(url, "adapt", "gpu-b2", "--samples", "3", "--no-wait")
    assert again.exit_code == 0, again.output  # nothing left in the way of a new adaptation


def test_samples_out_of_range_is_refused_by_adapt_and_up_alike(tmp_path):
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached
    adapt = CliRunner().invoke(app, ["adapt", "dev", "--samples", "2", *nowhere])
    up = CliRunner().invoke(app, ["up", "--samples", "201", "--data-dir", str(tmp_path / "data")])
    assert adapt.exit_code == up.exit_code == 2
    assert "samples must be between 3 and 200, got 2" in adapt.output
    assert "samples must be between 3 and 200, got 201" in up.output
    assert not (tmp_path / "data").exists()


def test_cancel_says_the_active_predictor_stays_only_when_there_is_one(live_api):
    url, server = live_api
    add_adapted_device_live(server)
    assert _invoke(url, "adapt", "gpu-b2", "--samples", "5", "--no-wait").exit_code == 0
    cancelled = _invoke(url, "adapt", "gpu-b2", "--cancel")
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.strip().endswith("5 unfinished job(s); the active predictor stays")


def test_a_client_key_is_told_which_key_may_adapt(live_api):
    """A client key may measure on any device but not adapt one: ``adapt`` and ``adapt --cancel`` exit 1 naming
    the keys that may (the device's owner's or an admin's), and nothing starts."""
    from latfarm.services.client import Client

    url, server = live_api
    add_device_live(server)
    with Client(url, ADMIN_KEY) as admin:
        client_key = admin.create_key("nas-client", ["client"])
    for args in (["--samples", "4", "--no-wait"], ["--samples", "4", "--wait-for-agent"], ["--cancel"]):
        result = CliRunner().invoke(app, ["adapt", "gpu-b2", *args, "--server", url, "--key", client_key])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output  # no note that its jobs wait queued
        assert "this key lacks permission 'devices'" in result.output
        assert "adapting a device's predictor takes its owner's key (scope owner) or an admin key" in result.output
    with server.state.sessions() as session:
        assert session.query(Adaptation).count() == session.query(Job).count() == 0


def test_adapt_always_starts_a_new_adaptation_even_of_the_active_k(live_api):
    """Unlike ``latfarm up`` (which reuses an active adaptation), ``latfarm adapt`` measures anew; its help says so."""
    url, server = live_api
    add_adapted_device_live(server, samples=4)
    result = _invoke(url, "adapt", "gpu-b2", "--samples", "4", "--no-wait")
    assert result.exit_code == 0, result.output
    with server.state.sessions() as session:
        states = sorted(a.state.value for a in session.query(Adaptation))
    assert states == ["active", "measuring"]
    shown = " ".join(CliRunner().invoke(app, ["adapt", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "Always a new adaptation, even when one of the same K is active (latfarm up reuses it)." in shown


def test_adapt_says_what_it_fitted_once_active(live_api, tmp_path):
    """Waiting ``latfarm adapt`` ends with one line on stdout: the space, the device, its measured archs (unstable ones
    counted) and the fit error, as ``latfarm up``'s summary names them."""
    from types import SimpleNamespace

    from latfarm.services.domain.adaptation import advance_all
    from tests.unit.test_api_adapt import _agent_measures

    url, server = live_api
    add_device_live(server)
    proc = interruptible_cli(
        "adapt", "gpu-b2", "--samples", "3", "--wait-for-agent", "--server", url, "--key", ADMIN_KEY
    )
    deadline = time.monotonic() + 60
    while not _jobs(server):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    truth = np.linspace(1.0, 3.0, 15625)  # any positive latencies: the fit's error is what is printed
    assert _agent_measures(SimpleNamespace(app=server), tmp_path, "gpu-b2", truth, unstable=True) == 3
    assert advance_all(server.state.sessions, server.state.predictions.predictor_loader) == 1  # the adapt worker's step
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert re.fullmatch(
        r"nb201 predictor of gpu-b2 active: 3 measured archs \(3 unstable: the device was busy, its round medians "
        r"over 5% apart even after a retry\), fit error \d+\.\d%\n",
        out,
    ), out
    assert "gpu-b2: active (3/3 measured)" in err  # the progress lines stay on stderr


def _jobs(server) -> int:
    with server.state.sessions() as session:
        return session.query(Job).count()


def test_the_adapted_line_names_the_archs_its_spread_was_calibrated_on():
    from latfarm.services.cli.measure_results import adapted

    metrics = {"fit_mean_abs_rel_error": 0.014, "calibration_archs": 0}
    assert adapted({"samples": 10, "metrics": metrics}) == "10 measured archs, fit error 1.4%"
    calibrated = {"samples": 10, "metrics": {**metrics, "calibration_archs": 23}}
    assert adapted(calibrated) == "10 measured archs, fit error 1.4%, spread calibrated on 23 other archs"
    unstable = {"samples": 10, "calibration": 20, "metrics": metrics}  # its R random archs all measured unstable
    assert adapted(unstable) == (
        "10 measured archs, fit error 1.4%, spread not calibrated: fewer than 10 other archs measured at random"
    )


def test_calibrate_is_checked_before_any_request_and_queued_with_the_samples(live_api, tmp_path):
    nowhere = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never reached
    for command in (["adapt", "dev", *nowhere], ["up", "--data-dir", str(tmp_path / "up-data")]):
        refused = CliRunner().invoke(app, [*command, "--calibrate", "5"])
        shown = " ".join(refused.output.replace("│", " ").split())  # as the usage box wraps it
        assert refused.exit_code == 2 and "calibration must be 0 or between 10 and 200 archs, got 5" in shown
    assert not (tmp_path / "up-data").exists()
    url, server = live_api
    add_device_live(server)
    started = _invoke(url, "adapt", "gpu-b2", "--samples", "4", "--calibrate", "10", "--no-wait")
    assert started.exit_code == 0, started.output
    assert "started (14 archs queued)" in started.stdout
    with server.state.sessions() as session:
        assert session.query(Adaptation).one().calibration == 10
        assert session.query(Job).count() == 14


def test_a_litert_devices_adaptation_measures_tflite_models(live_api):
    """Without --format a LiteRT device's adaptation queues TFLite models (what its agents run); ``--format onnx`` is
    a usage error that starts nothing, an unknown format one before any request."""
    url, server = live_api
    add_device_live(server, runtime="litert", precision="fp32")
    refused = _invoke(url, "adapt", "gpu-b2", "--samples", "3", "--format", "onnx", "--no-wait")
    shown = " ".join(refused.output.replace("│", " ").split())  # the usage error's box wraps it
    assert refused.exit_code == 2 and "litert devices are measured in tflite models, not onnx" in shown
    with server.state.sessions() as session:
        assert session.query(Adaptation).count() == session.query(Job).count() == 0
    started = _invoke(url, "adapt", "gpu-b2", "--samples", "3", "--no-wait")
    assert started.exit_code == 0, started.output
    with server.state.sessions() as session:
        assert [job.format for job in session.query(Job)] == ["tflite"] * 3
    refused = CliRunner().invoke(app, ["adapt", "gpu-b2", "--format", "pb", "--server", "http://127.0.0.1:9"])
    assert refused.exit_code == 2 and "must be one of onnx, tflite, got 'pb'" in refused.output


def test_a_server_gone_while_adapting_says_the_adaptation_goes_on(tmp_path, sqlite_url, monkeypatch):
    """The server stops answering for longer than LATFARM_WAIT_RETRY_S: one line says so once, the last one says
    the adaptation goes on and how to see it (exit 1)."""
    monkeypatch.setenv("LATFARM_WAIT_RETRY_S", "2")
    with app_on(make_settings(tmp_path, sqlite_url)) as server, serving(server) as url:
        add_device_live(server)
        proc = interruptible_cli(
            "adapt", "gpu-b2", "--samples", "3", "--wait-for-agent", "--server", url, "--key", ADMIN_KEY
        )
        deadline = time.monotonic() + 60
        while True:  # waiting on its 3 jobs
            with server.state.sessions() as session:
                if session.query(Job).count() == 3:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.5)
    err = proc.communicate(timeout=60)[1]  # the server stopped with the block
    assert proc.returncode == 1, err
    told, last = [line for line in err.splitlines() if "unreachable or busy (" in line], err.splitlines()[-1]
    assert len(told) == 1 and told[0].startswith(f"latfarm adapt: {url} is unreachable or busy (GET"), err
    assert last.startswith(f"latfarm adapt: {url} unreachable or busy for 2 s (GET /v1/devices/gpu-b2/adapt"), err
    assert last.endswith("; the adaptation goes on on the server; its state: latfarm adapt gpu-b2 --status"), err
