"""Devices, enrollments, agents and exports over REST, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import pickle
import re
from datetime import timedelta

import pytest

from latfarm.predictor import nb201
from latfarm.services.core.security import hash_secret
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Agent, Enrollment, Source, utcnow
from tests.api_support import ADMIN, add_device, add_measurements


def test_create_list_get_device(api, keys):
    created = add_device(api, "pixel7-cpu_fp32.v1", hardware="Tensor G2", batch_size=1)
    assert created["name"] == "pixel7-cpu_fp32.v1" and created["hardware"] == "Tensor G2"
    assert [d["name"] for d in api.get("/v1/devices", headers=keys["client"]).json()] == ["pixel7-cpu_fp32.v1"]
    detail = api.get("/v1/devices/pixel7-cpu_fp32.v1", headers=keys["client"]).json()
    assert detail["measurements"] == {"total": 0}
    assert detail["agents"] == 0 and detail["agents_online"] == 0
    assert detail["predictor"] == {"state": "none"}


def test_a_device_runs_a_runtime_the_agents_measure_with(api, keys):
    """Any other runtime is refused naming the field and the runtimes there are; nothing is stored."""
    for runtime in ("tensorrt", "", "ONNXRUNTIME", 7):
        refused = api.post("/v1/devices", json={"name": "jetson", "runtime": runtime}, headers=ADMIN)
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["field"] == "runtime" and body["message"].startswith("runtime: "), body
        if isinstance(runtime, str):
            assert body["message"] == f"runtime: must be one of onnxruntime, litert, got {runtime!r}"
    assert api.get("/v1/devices", headers=ADMIN).json() == []
    assert add_device(api, "pixel7-litert", runtime="litert")["runtime"] == "litert"
    assert add_device(api, "laptop")["runtime"] == "onnxruntime"


def test_device_errors(api, keys):
    add_device(api, "dev1")
    duplicate = api.post("/v1/devices", json={"name": "dev1"}, headers=ADMIN)
    assert duplicate.status_code == 409 and "dev1" in duplicate.json()["message"]
    bad = api.post("/v1/devices", json={"name": "bad name/x"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["message"].startswith("name:")
    bad_batch = api.post("/v1/devices", json={"name": "ok", "batch_size": 0}, headers=ADMIN)
    assert bad_batch.status_code == 422 and "batch_size" in bad_batch.json()["message"]
    assert api.get("/v1/devices/nope", headers=ADMIN).status_code == 404
    assert api.post("/v1/devices", json={"name": "x"}).status_code == 401
    forbidden = api.post("/v1/devices", json={"name": "x"}, headers=keys["client"])
    assert forbidden.status_code == 403 and "devices" in forbidden.json()["message"]
    assert api.post("/v1/devices", json={"name": "x"}, headers=keys["owner"]).status_code == 201
    assert [d["name"] for d in api.get("/v1/devices", headers=ADMIN).json()] == ["dev1", "x"]


def test_enrollment_token_is_stored_hashed(api, keys):
    assert api.post("/v1/devices", json={"name": "dev1"}, headers=keys["owner"]).status_code == 201
    response = api.post("/v1/devices/dev1/enrollments", json={"expires_in_s": 600}, headers=keys["owner"])
    assert response.status_code == 201
    token = response.json()["token"]
    with api.app.state.sessions() as session:
        row = session.query(Enrollment).one()
        assert row.token_hash == hash_secret(token) and row.created_by == "owner-key"
        assert row.expires_at is not None
    assert api.post("/v1/devices/dev1/enrollments", headers=keys["client"]).status_code == 403
    assert api.post("/v1/devices/nope/enrollments", headers=keys["owner"]).status_code == 404
    assert api.post("/v1/devices/dev1/enrollments", headers=ADMIN).status_code == 201  # no body: default expiry


def test_agents_online_status(api, keys):
    add_device(api, "dev1")
    interval = api.app.state.settings.heartbeat_interval_s
    with transaction(api.app.state.sessions) as session:
        dev = device_by_name(session, "dev1")
        now = utcnow()
        session.add(Agent(device_id=dev.id, name="fresh", credential_hash="a" * 64, last_heartbeat=now))
        old = now - timedelta(seconds=3 * interval)
        session.add(Agent(device_id=dev.id, name="stale", credential_hash="b" * 64, last_heartbeat=old))
        session.add(Agent(device_id=dev.id, name="never", credential_hash="c" * 64))
    agents = {a["name"]: a for a in api.get("/v1/devices/dev1/agents", headers=keys["client"]).json()}
    assert {n: a["online"] for n, a in agents.items()} == {"fresh": True, "stale": False, "never": False}
    detail = api.get("/v1/devices/dev1", headers=keys["client"]).json()
    assert detail["agents"] == 3 and detail["agents_online"] == 1
    assert api.get("/v1/devices/nope/agents", headers=ADMIN).status_code == 404


def test_device_counts_and_exports(api, keys):
    add_device(api, "dev1")
    add_measurements(api, "dev1", {0: 1.5, 1: 2.5}, source=Source.imported, dataset="help-nb201")
    add_measurements(api, "dev1", {1: 2.0, 7: 3.0})
    detail = api.get("/v1/devices/dev1", headers=keys["client"]).json()
    assert detail["measurements"] == {"imported": 2, "measured": 2, "total": 4}
    assert detail["archs_measured"] == 3

    response = api.get("/v1/devices/dev1/export?format=csv", headers=keys["client"])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    figures = sorted((r["nb201_index"], r["source"], float(r["latency_ms"]), float(r["median_ms"])) for r in rows)
    assert figures == [
        ("0", "imported", 1.5, 1.5),
        ("1", "imported", 2.5, 2.5),
        ("1", "measured", 2.0, 2.5),
        ("7", "measured", 3.0, 3.5),
    ]
    assert sorted(r["statistic"] for r in rows) == ["", "", "min", "min"]
    assert response.headers["X-Measurements"] == "4"
    response = api.get("/v1/devices/dev1/export", params={"format": "latbench"}, headers=keys["client"])
    assert response.status_code == 200
    latbench = pickle.loads(response.content)  # {6-op tuple: seconds}, the median of an arch's latency_ms
    assert latbench[nb201.from_official_index(1)] == pytest.approx(0.00225)
    assert len(latbench) == 3 and response.headers["X-Measurements"] == "3"  # entries written: arch 1's two, one

    bad = api.get("/v1/devices/dev1/export?format=xml", headers=keys["client"])
    assert bad.status_code == 422 and "format" in bad.json()["message"]
    assert api.get("/v1/devices/nope/export", headers=keys["client"]).status_code == 404


def test_device_conditions_are_checked_and_shown(api, keys):
    """A device's default conditions (batch size, precision, input variant) are valid ones, and it shows them."""
    bad = api.post("/v1/devices", json={"name": "d-bad", "precision": "fp64"}, headers=ADMIN)
    assert bad.status_code == 422 and "precision" in bad.json()["message"]
    assert api.post("/v1/devices", json={"name": "d-bad", "resolution": 4}, headers=ADMIN).status_code == 422
    created = api.post(
        "/v1/devices", json={"name": "c100", "batch_size": 4, "precision": "int8", "classes": 100}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    shown = api.get("/v1/devices/c100", headers=ADMIN).json()
    assert (shown["batch_size"], shown["precision"], shown["resolution"], shown["classes"]) == (4, "int8", 32, 100)
    assert api.get("/v1/devices/d-bad", headers=ADMIN).status_code == 404


def test_every_timestamp_the_api_returns_is_utc_iso_8601_with_z(api):
    """Devices, keys, enrollments, jobs, measurements and adaptations (whose block no schema writes) alike, on SQLite
    (naive times back from the database) and PostgreSQL."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {1: 1.0, 2: 2.0})
    api.post("/v1/devices/dev1/enrollments", json={}, headers=ADMIN)
    batch = api.post("/v1/jobs", json={"device": "dev1", "archs": [0]}, headers=ADMIN).json()["id"]
    assert api.post("/v1/devices/dev1/adapt", json={"samples": 3}, headers=ADMIN).status_code == 202
    found = []
    for path in (
        "/v1/devices",
        "/v1/devices/dev1",
        "/v1/devices/dev1/adapt",
        f"/v1/jobs/{batch}?items=true",
        "/v1/measurements",
        "/v1/keys",
    ):
        found += re.findall(r'"(\w+_at)":"([^"]+)"', api.get(path, headers=ADMIN).text)
    assert len(found) >= 8, found
    for name, moment in found:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", moment), (name, moment)
