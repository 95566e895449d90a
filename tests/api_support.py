"""Fixtures and helpers shared by the REST API tests (a plugin of ``tests/conftest.py``: fixtures ``api``, ``keys``,
``live_api``).

The app is imported inside the fixture, so collecting unrelated tests never depends on the web stack."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select, update

from latfarm.predictor import nb201
from latfarm.services.core.config import Settings
from latfarm.services.domain import batches
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Adaptation, AdaptState, Job, JobState, Measurement, Source, utcnow

ADMIN_KEY = "lf_admin_test-bootstrap-key"
MEDIAN_OFFSET_MS = 0.5  # median_ms - latency_ms of measured rows stored by add_measurements


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)


def arch(index: int) -> str:
    return nb201.to_string(nb201.from_official_index(index))


def make_settings(tmp_path, db_url: str, **overrides) -> Settings:
    return Settings(data_dir=tmp_path / "data", db_url=db_url, admin_key=ADMIN_KEY, **overrides)


@contextmanager
def app_on(settings: Settings):
    """``create_app`` on a bootstrapped runtime (schema upgraded, admin key registered), closed afterwards."""
    from latfarm.services.api import create_app
    from latfarm.services.runtime import Runtime

    with Runtime(settings) as runtime:
        runtime.bootstrap()
        yield create_app(runtime)


@pytest.fixture
def api(tmp_path, migrated_db_url):
    """A TestClient on a fresh app and database (SQLite and PostgreSQL)."""
    from fastapi.testclient import TestClient

    with app_on(make_settings(tmp_path, migrated_db_url)) as app, TestClient(app) as client:
        yield client


@pytest.fixture
def keys(api) -> dict[str, dict[str, str]]:
    """Authorization headers per scope."""
    out = {"admin": ADMIN}
    for scope in ("client", "owner"):
        response = api.post("/v1/keys", json={"name": f"{scope}-key", "scopes": [scope]}, headers=ADMIN)
        assert response.status_code == 201, response.text
        out[scope] = bearer(response.json()["key"])
    return out


def add_device(api, name: str = "dev1", **fields) -> dict:
    response = api.post("/v1/devices", json={"name": name, **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def refusal(api, method: str, path: str, given: dict) -> dict:
    """The answer to an admin's ``given`` (a POST's JSON body, a GET's query) at ``path``, which must be a 422."""
    sent = {"json": given} if method == "post" else {"params": given}
    response = getattr(api, method)(path, headers=ADMIN, **sent)
    assert response.status_code == 422, (path, given, response.text)
    return response.json()


def devices_and_jobs(api) -> tuple[list[str], int]:
    """The names of the stored devices and the number of jobs (what a refused request must leave as it was)."""
    names = [device["name"] for device in api.get("/v1/devices", headers=ADMIN).json()]
    with api.app.state.sessions() as session:
        return names, session.query(Job).count()


def add_measurements(
    api,
    device: str,
    latencies: dict[int, float],
    *,
    source=Source.measured,
    unstable=False,
    dataset=None,
    std=None,
    statistic="min",
    conditions: Conditions | None = None,
    drawn_at_random: bool | None = None,
) -> None:
    """Store one measurement per NB201 index of ``latencies`` (the fastest run, ms) for ``device``, measured under
    ``conditions`` (default: the device's); with ``drawn_at_random`` True or False, each of a job of a batch queued
    (``batches.submit_batch``) with that flag, done (None: of no job).

    Measured rows have a ``median_ms`` ``MEDIAN_OFFSET_MS`` above, as an agent's do, and ``statistic`` picks their
    headline ``latency_ms``: a consumer reading the wrong figure shows up in the tests. Imported rows carry one
    figure in all.
    """
    measured = source == Source.measured
    offset, protocol = (MEDIAN_OFFSET_MS, {"statistic": statistic}) if measured else (0.0, {})
    sessions = api.app.state.sessions
    with transaction(sessions) as session:
        target = device_by_name(session, device)
        device_id, conditions = target.id, conditions or conditions_of(target)
        ids = ensure_archs(session, [arch(i) for i in latencies])
        jobs: dict[int, str] = {}
        if drawn_at_random is not None:
            batch = batches.submit_batch(
                session, target, list(ids), conditions=conditions, drawn_at_random=drawn_at_random
            )
            done = session.scalars(select(Job).where(Job.batch_id == batch.id))
            jobs = {job.arch_id: job.id for job in done}
            session.execute(update(Job).where(Job.batch_id == batch.id).values(state=JobState.done))
        session.add_all(
            Measurement(
                device_id=device_id,
                arch_id=ids[arch(i)],
                job_id=jobs.get(ids[arch(i)]),
                source=source,
                dataset=dataset,
                latency_ms=ms + offset if statistic == "median" else ms,
                min_ms=ms if measured else None,
                median_ms=ms + offset,
                protocol=dict(protocol),
                std_ms=std,
                unstable=unstable,
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
            for i, ms in latencies.items()
        )


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` on a real uvicorn server in a thread, on a free port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


LIVE_GRPC_PORT = 18651  # nothing listens there: the live server runs REST only


@pytest.fixture
def live_api(tmp_path, sqlite_url):
    """(base URL, app) of a live server (uvicorn in a thread, SQLite) on a free port; its agents' gRPC port is
    ``LIVE_GRPC_PORT``, not the default, so what names that port is seen to take the server's."""
    with app_on(make_settings(tmp_path, sqlite_url, grpc_port=LIVE_GRPC_PORT)) as app, serving(app) as url:
        yield url, app


def interruptible_cli(*args: str) -> subprocess.Popen:
    """``latfarm ARGS`` as a child process that takes SIGINT as a terminal's Ctrl-C: a parent started in the
    background (a CI runner's shell) may ignore SIGINT, children inherit that, and Python then raises no
    KeyboardInterrupt."""
    return subprocess.Popen(
        [sys.executable, "-m", "latfarm.services.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt_once_queued(server, proc: subprocess.Popen, jobs: int) -> str:
    """Ctrl-C (SIGINT) to the CLI ``proc`` once ``server`` holds ``jobs`` jobs (it is then waiting on them); returns
    its stderr after it exits (within 30 s)."""
    deadline = time.monotonic() + 60
    while True:
        with server.state.sessions() as session:
            if session.query(Job).count() == jobs:
                break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)[1]


def activate_adaptation(sessions, device: str, latencies: list[float]):
    """Activate an adaptation of ``device`` fitted on archs 1..4 (superseding the active one); returns its model."""
    from latfarm.predictor.model import Predictor  # torch: only for the tests that adapt

    predictor = Predictor.load()
    model = predictor.adapt([1, 2, 3, 4], latencies)
    with transaction(sessions) as session:
        target = device_by_name(session, device)
        for old in session.query(Adaptation).filter_by(device_id=target.id, state=AdaptState.active):
            old.state = AdaptState.superseded
        session.add(
            Adaptation(
                device_id=target.id,
                state=AdaptState.active,
                samples=4,
                sample_archs=[1, 2, 3, 4],
                checkpoint=predictor.version,
                params=model.to_state(),
                conditions_key=Conditions().key,
                activated_at=utcnow(),
            )
        )
    return model
