"""``latfarm up``'s own steps, without its child processes: a busy port refused before anything is created, and
``--samples`` and ``--calibrate`` re-adapting a predictor fitted from another K or R (not given: reused); port 0 and
signals while starting (``up`` as a process, stopped before it adapts)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from threading import Event

import pytest

from latfarm.services.cli import up
from latfarm.services.client import Client
from latfarm.services.core.config import Settings
from tests.api_support import ADMIN_KEY, bearer, interruptible_cli
from tests.unit.test_cli_measure import add_adapted_device_live, add_device_live


def test_a_busy_port_is_refused_before_anything_is_created(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(data_dir=tmp_path / "data", http_port=port, grpc_port=0)
        with pytest.raises(SystemExit) as exited:
            up.run_up(settings)
    message = f"latfarm up: port {port} is in use (is latfarm up already running? use --http-port)"
    assert str(exited.value) == message
    assert not (tmp_path / "data").exists()


def test_up_replaces_its_revoked_admin_key_and_refuses_a_revoked_given_one(tmp_path, capsys):
    """``up`` owns ``admin.key``: a key revoked in its database is replaced (it says so); a revoked
    ``LATFARM_ADMIN_KEY`` it cannot replace: one line, exit 1."""
    from fastapi.testclient import TestClient

    from latfarm.services.api import create_app
    from latfarm.services.runtime import Runtime

    settings = Settings(data_dir=tmp_path)
    first = up.admin_key(settings)  # no database yet
    assert up.admin_key(settings) == first and (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    with Runtime(settings.model_copy(update={"admin_key": first})) as runtime:
        runtime.bootstrap()
        with TestClient(create_app(runtime)) as client:
            second = client.post("/v1/keys", json={"name": "second", "scopes": ["admin"]}, headers=bearer(first))
            assert client.delete("/v1/keys/1", headers=bearer(second.json()["key"])).status_code == 204
    capsys.readouterr()
    renewed = up.admin_key(settings)
    assert renewed != first and (tmp_path / "admin.key").read_text() == renewed
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    assert f"the admin key in {tmp_path / 'admin.key'} was revoked: made a new one there" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        up.admin_key(settings.model_copy(update={"admin_key": first}))
    assert str(exited.value) == (
        "latfarm up: LATFARM_ADMIN_KEY was revoked: set it to a new secret, or unset it "
        f"(up then keeps its own key in {tmp_path / 'admin.key'})"
    )


class _Stopped(RuntimeError):
    pass


class _StopAtFirstCheck:
    """Children stand-in: the progress loop's first look at the children stops ``_adapt``."""

    def check(self) -> None:
        raise _Stopped


def test_a_different_samples_adapts_again_and_the_same_reuses(live_api, capsys):
    url, server = live_api
    add_adapted_device_live(server)
    client = Client(url, ADMIN_KEY)
    for samples in (4, None):  # the same K, or none given: reused
        reused = up._adapt(client, "gpu-b2", samples, None, _StopAtFirstCheck(), Event())  # type: ignore[arg-type]
        assert reused is not None and reused["samples"] == 4
        assert "already adapted (4 samples): reused" in capsys.readouterr().out

    with pytest.raises(_Stopped):
        up._adapt(client, "gpu-b2", 5, None, _StopAtFirstCheck(), Event())  # type: ignore[arg-type]
    assert "adapted from 4 samples: adapting again from 5 (--samples)" in " ".join(capsys.readouterr().out.split())
    state = client.device("gpu-b2")["predictors"]["nb201"]
    assert (state["state"], state["samples"]) == ("measuring", 5)


def test_a_different_calibrate_adapts_again_with_its_random_archs_and_the_same_reuses(live_api, capsys):
    url, server = live_api
    add_adapted_device_live(server)  # calibrated on no random archs
    client = Client(url, ADMIN_KEY)
    for calibration in (0, None):  # the same R, or none given: reused
        reused = up._adapt(client, "gpu-b2", None, calibration, _StopAtFirstCheck(), Event())  # type: ignore[arg-type]
        assert reused is not None and reused["calibration"] == 0
        assert "already adapted (4 samples): reused" in capsys.readouterr().out

    with pytest.raises(_Stopped):
        up._adapt(client, "gpu-b2", None, 20, _StopAtFirstCheck(), Event())  # type: ignore[arg-type]
    out = " ".join(capsys.readouterr().out.split())
    assert "adapted with 0 calibrating archs: adapting again with 20 (--calibrate)" in out
    assert "measuring 24 archs on gpu-b2" in out  # K not given: the active adaptation's 4
    state = client.device("gpu-b2")["predictors"]["nb201"]
    assert (state["state"], state["samples"], state["calibration"]) == ("measuring", 4, 20)
    assert state["progress"]["total"] == 24


def test_a_cancelled_adaptation_after_the_active_one_leaves_it_reused(live_api, capsys):
    url, server = live_api
    add_adapted_device_live(server)
    client = Client(url, ADMIN_KEY)
    client.adapt("gpu-b2", samples=5, wait=False)
    client.cancel_adaptation("gpu-b2")  # latfarm adapt's Ctrl-C: "the active predictor stays"
    answer = client.device("gpu-b2")
    assert answer["predictors"]["nb201"]["state"] == "cancelled"
    active = answer["active"]["nb201"]
    assert (active["state"], active["samples"], active["current"]) == ("active", 4, True)
    reused = up._adapt(client, "gpu-b2", None, None, _StopAtFirstCheck(), Event())  # type: ignore[arg-type]
    assert reused == active
    assert "already adapted (4 samples): reused" in capsys.readouterr().out


class _Running:
    """Children stand-in: all running."""

    def check(self) -> None:
        pass


def test_ctrl_c_while_up_adapts_cancels_the_adaptation(live_api, capsys):
    url, server = live_api
    add_device_live(server)
    client = Client(url, ADMIN_KEY)
    interrupted = Event()
    interrupted.set()  # Ctrl-C arrived: the first look while measuring cancels
    assert up._adapt(client, "gpu-b2", 3, None, _Running(), interrupted) is None  # type: ignore[arg-type]
    assert "interrupted: cancelled adaptation" in capsys.readouterr().out
    state = client.device("gpu-b2")["predictors"]["nb201"]
    assert (state["state"], state["progress"]["cancelled"]) == ("cancelled", 3)


@pytest.mark.parametrize(
    ("folder", "said"), [("nope", "no such folder"), ("empty", "not a HELP folder (needs latency/<device>.pt)")]
)
def test_a_datasets_folder_that_is_not_a_help_folder_is_refused_before_anything_is_created(tmp_path, folder, said):
    (tmp_path / "empty").mkdir()
    settings = Settings(data_dir=tmp_path / "data", http_port=0, grpc_port=0, datasets_dir=tmp_path / folder)
    with pytest.raises(SystemExit) as exited:
        up.run_up(settings)
    assert str(exited.value) == f"latfarm up: LATFARM_DATASETS_DIR: {tmp_path / folder}: {said}"
    assert not (tmp_path / "data").exists()


def _children_of(data_dir: Path) -> list[int]:
    """Pids of live processes started with ``LATFARM_DATA_DIR=data_dir`` (``up``'s children)."""
    wanted = f"LATFARM_DATA_DIR={data_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_sigterm_while_up_waits_for_its_server_stops_it_and_its_children(tmp_path):
    data = tmp_path / "data"
    proc = interruptible_cli("up", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(data))
    try:
        deadline = time.monotonic() + 30
        while not (data / "logs" / "server.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the server child is starting: ``up`` waits for /healthz
        assert _children_of(data), "serve did not start"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("latfarm stopped")
    assert not _children_of(data)


def test_up_on_port_0_prints_the_ports_it_picked(tmp_path):
    data = tmp_path / "data"
    proc = interruptible_cli("up", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(data))
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=40)
    finally:
        proc.kill()
    found = re.match(r"server up: http://127\.0\.0\.1:(\d+) \(agents' gRPC: 127\.0\.0\.1:(\d+); log: ", line)
    assert found, line
    assert 0 not in {int(found[1]), int(found[2])}
    assert proc.returncode == 130  # Ctrl-C before it serves (it was adapting) interrupted it


def _up(data: Path) -> subprocess.Popen:
    """``latfarm up`` on ports it picks, once it said ``server up``."""
    proc = interruptible_cli("up", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(data))
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.startswith("server up: "), line + proc.communicate()[1]
    return proc


def test_one_up_per_data_folder_and_a_killed_one_leaves_no_lock(tmp_path):
    """Port 0 cannot clash: the data folder's lock refuses a second ``up`` (and a ``serve`` on its SQLite database)
    with one line, exit 1, nothing started; a SIGKILLed ``up`` (its children die with it) leaves no lock behind."""
    data = tmp_path / "data"
    first = _up(data)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "latfarm.services.cli", "up", "--http-port", "0", "--grpc-port", "0"],
            cwd=tmp_path,
            env={**os.environ, "LATFARM_DATA_DIR": str(data)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        serve = subprocess.run(
            [sys.executable, "-m", "latfarm.services.cli", "serve", "--http-port", "0", "--grpc-port", "0"],
            cwd=tmp_path,
            env={**os.environ, "LATFARM_DATA_DIR": str(data)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.splitlines() == [f"latfarm up: {data} is in use by latfarm up (pid {first.pid})"]
    assert serve.returncode == 1
    database = data.resolve() / "latfarm.db"
    said = rf"latfarm serve: the SQLite database {re.escape(str(database))} is in use by latfarm serve \(pid \d+\); "
    assert re.fullmatch(said + r"one server per SQLite database \(PostgreSQL: several\)\n", serve.stderr), serve.stderr
    deadline = time.monotonic() + 30
    while _children_of(data):  # they die with it, releasing the database's lock
        assert time.monotonic() < deadline, "up's children outlived it"
        time.sleep(0.1)
    third = _up(data)
    third.send_signal(signal.SIGTERM)
    third.communicate(timeout=60)
    assert third.returncode == 0
