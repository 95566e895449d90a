"""API keys and scopes, the bootstrap admin key, health, metrics and the OpenAPI docs."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from latfarm.services.api import create_app
from latfarm.services.api.auth import BOOTSTRAP_NAME, create_key, ensure_admin_key
from latfarm.services.core.config import Settings
from latfarm.services.core.errors import Conflict
from latfarm.services.core.security import hash_secret
from latfarm.services.runtime import Runtime
from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.models import ApiKey, Base
from tests.api_support import ADMIN, add_device, add_measurements, arch, bearer

T = TypeVar("T")


def test_create_use_and_revoke_keys(api, keys):
    response = api.post("/v1/keys", json={"name": "nas", "scopes": ["client"]}, headers=ADMIN)
    assert response.status_code == 201
    created = response.json()
    assert created["scopes"] == ["client"] and created["key"].startswith("lf_client_")
    with api.app.state.sessions() as session:  # only the hash is stored
        assert all(created["key"] not in (k.key_hash, k.name) for k in session.query(ApiKey))
    assert api.get("/v1/devices", headers=bearer(created["key"])).status_code == 200
    listed = api.get("/v1/keys", headers=ADMIN).json()
    assert {k["name"] for k in listed} >= {"nas", "client-key", "owner-key", "bootstrap-admin"}
    assert all("key" not in k for k in listed)
    assert api.delete(f"/v1/keys/{created['id']}", headers=ADMIN).status_code == 204
    revoked = api.get("/v1/devices", headers=bearer(created["key"]))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    assert api.delete("/v1/keys/999999", headers=ADMIN).status_code == 404


def test_a_key_revoked_elsewhere_lapses_within_the_cache_ttl(api, keys, monkeypatch):
    """A valid key is trusted for ``KEY_TTL_S`` without a database read; revoked by another replica (here: straight
    in the database) it stops working once its entry lapses."""
    created = api.post("/v1/keys", json={"name": "replica", "scopes": ["client"]}, headers=ADMIN).json()
    assert api.get("/v1/devices", headers=bearer(created["key"])).status_code == 200
    with api.app.state.sessions() as session:
        session.get(ApiKey, created["id"]).revoked = True
        session.commit()
    assert api.get("/v1/devices", headers=bearer(created["key"])).status_code == 200  # cached
    monkeypatch.setattr(api.app.state.principals, "ttl_s", 0.0)
    assert api.get("/v1/devices", headers=bearer(created["key"])).status_code == 401


def test_key_errors(api, keys):
    for headers in (keys["client"], keys["owner"]):
        assert api.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=headers).status_code == 403
    bad = api.post("/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=ADMIN)
    assert bad.status_code == 422 and "scopes[0]" in bad.json()["message"]
    assert api.post("/v1/keys", json={"scopes": ["client"]}, headers=ADMIN).json()["message"].startswith("name")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = api.get("/v1/devices", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_bootstrap_admin_key(tmp_path, db_url, monkeypatch):
    monkeypatch.delenv("LATFARM_ADMIN_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, db_url=db_url)
    with Runtime(settings) as runtime, Runtime(settings) as restarted:
        generated = runtime.bootstrap()
        assert generated and generated.startswith("lf_admin_")
        assert restarted.bootstrap() is None  # printed once only
        with TestClient(create_app(runtime)) as client:
            created = client.post("/v1/keys", json={"name": "k", "scopes": ["owner"]}, headers=bearer(generated))
            assert created.is_success
    monkeypatch.setenv("LATFARM_ADMIN_KEY", "lf_admin_from-env")
    with Runtime(Settings.from_env(data_dir=tmp_path, db_url=db_url)) as env_runtime:
        assert env_runtime.bootstrap() is None
        with TestClient(create_app(env_runtime)) as client:
            assert client.get("/v1/keys", headers=bearer("lf_admin_from-env")).status_code == 200


def test_healthz_docs_and_metrics(api, keys):
    health = api.get("/healthz").json()
    assert health == {
        "status": "ok", "database": "ok", "redis": "not configured", "grpc_port": health["grpc_port"], "grpc_tls": False
    }  # fmt: skip
    assert isinstance(health["grpc_port"], int)
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path, model in (("/v1/predict", "PredictResponse"), ("/v1/rank", "RankResponse")):  # the raw-JSON routes
        schema = paths[path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{model}"), (path, schema)
    add_device(api, "dev1")
    add_measurements(api, "dev1", {1: 1.0, 2: 2.0})
    api.post("/v1/jobs", json={"device": "dev1", "archs": [arch(5), arch(6), arch(7)]}, headers=keys["client"])
    text = api.get("/metrics", headers=keys["client"]).text
    assert 'latfarm_queue_depth{state="queued"} 3.0' in text
    assert 'latfarm_measurements_stored{source="measured"} 2.0' in text
    assert 'latfarm_agents_online{device="dev1"} 0.0' in text
    assert 'latfarm_http_requests_total{method="POST",route="/v1/jobs",status="201"} 1.0' in text
    assert "latfarm_http_request_duration_seconds_bucket" in text


def test_auth_and_size_errors_carry_their_codes(api, keys):
    """401, 403 and 413 answers come from the one error hierarchy: a ``code`` a client can branch on."""
    unknown = api.get("/v1/devices", headers=bearer("lf_nope"))
    assert unknown.status_code == 401 and unknown.json()["code"] == "unauthenticated"
    assert unknown.headers["www-authenticate"] == "Bearer"
    missing = api.get("/v1/devices")
    assert missing.status_code == 401 and missing.json()["code"] == "unauthenticated"
    denied = api.post("/v1/keys", json={"name": "x", "scopes": ["client"]}, headers=keys["client"])
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    add_device(api, "dev1")
    too_many = api.post("/v1/predict", json={"device": "dev1", "archs": [0] * 20_000}, headers=ADMIN)
    assert too_many.status_code == 413 and too_many.json()["code"] == "resource_exhausted"


def test_a_revoked_admin_key_stays_revoked_and_a_new_one_takes_a_free_name(tmp_path, db_url, caplog):
    """Revoked through the API, the ``LATFARM_ADMIN_KEY`` key stays revoked at the next start (a warning says
    so); a new ``LATFARM_ADMIN_KEY`` is registered under a name no unrevoked key has."""
    settings = Settings(data_dir=tmp_path, db_url=db_url, admin_key="lf_admin_first")
    with Runtime(settings) as runtime:
        runtime.bootstrap()
        with TestClient(create_app(runtime)) as client:
            second = client.post(
                "/v1/keys", json={"name": "second", "scopes": ["admin"]}, headers=bearer("lf_admin_first")
            ).json()
            assert client.delete("/v1/keys/1", headers=bearer(second["key"])).status_code == 204
    with Runtime(settings) as restarted:
        assert restarted.bootstrap() is None
        with TestClient(create_app(restarted)) as client:
            assert client.get("/v1/keys", headers=bearer("lf_admin_first")).status_code == 401
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "LATFARM_ADMIN_KEY is key 1 (bootstrap-admin), which was revoked: it stays revoked; log in with another "
        "admin key, or set LATFARM_ADMIN_KEY to a new secret and restart"
    ]
    for admin_key, name in (("lf_admin_new", "bootstrap-admin"), ("lf_admin_newer", "bootstrap-admin-2")):
        with Runtime(settings.model_copy(update={"admin_key": admin_key})) as runtime:
            runtime.bootstrap()
            with TestClient(create_app(runtime)) as client:
                listed = client.get("/v1/keys", headers=bearer(admin_key)).json()
        assert listed[-1]["name"] == name and not listed[-1]["revoked"]


def test_an_unrevoked_key_name_is_taken(api, keys):
    """Key names are how the audit log names actors: an unrevoked key's name is refused (409), a revoked one's is
    free again."""
    first = api.post("/v1/keys", json={"name": "nas", "scopes": ["client"]}, headers=ADMIN)
    again = api.post("/v1/keys", json={"name": "nas", "scopes": ["owner"]}, headers=ADMIN)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_exists" and again.json()["field"] == "name"
    assert again.json()["message"] == "name: an unrevoked key is called 'nas': pick another name"
    assert api.delete(f"/v1/keys/{first.json()['id']}", headers=ADMIN).status_code == 204
    assert api.post("/v1/keys", json={"name": "nas", "scopes": ["owner"]}, headers=ADMIN).status_code == 201


def test_a_name_taken_between_the_check_and_the_insert_is_refused_alike(api, keys):
    """Of two requests at once for one name, the one inserting second meets the database's unique index of the
    unrevoked keys' names (``uq_api_keys_active_name``) and gets the same 409: here the other request's key is
    inserted after this one's check, just before its insert."""

    def other_request_first(session, _context, _instances) -> None:
        session.connection().execute(
            insert(ApiKey).values(name="racer", key_hash=hash_secret("lf_client_other"), scopes=["client"])
        )

    event.listen(api.app.state.sessions, "before_flush", other_request_first)
    try:
        lost = api.post("/v1/keys", json={"name": "racer", "scopes": ["owner"]}, headers=ADMIN)
    finally:
        event.remove(api.app.state.sessions, "before_flush", other_request_first)
    assert lost.status_code == 409, lost.text
    assert lost.json()["code"] == "already_exists" and lost.json()["field"] == "name"
    assert lost.json()["message"] == "name: an unrevoked key is called 'racer': pick another name"
    assert api.post("/v1/keys", json={"name": "racer", "scopes": ["owner"]}, headers=ADMIN).status_code == 201


def test_two_keys_created_at_once_under_one_name_on_postgresql(pg_url):
    """PostgreSQL reads committed rows only, so two transactions creating one name both pass the check; the second
    insert waits on the unique index for the first transaction and, once it commits, is refused as ``Conflict``.
    Replicas seeding the bootstrap admin key at once end with one: the second finds the first's on its retry."""
    engine = make_engine(pg_url)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)

    def create_twin() -> None:
        with sessions() as session:
            create_key(session, "twin", ["client"])

    try:
        with sessions() as first:
            create_key(first, "twin", ["client"])
            with pytest.raises(Conflict, match="an unrevoked key is called 'twin'"):
                _once_it_waits_for(first, create_twin)
        with sessions() as first:
            create_key(first, BOOTSTRAP_NAME, ["admin"])  # another replica's seeding
            assert _once_it_waits_for(first, lambda: ensure_admin_key(sessions, None)) is None
        with sessions() as session:
            assert session.scalars(select(ApiKey.name).order_by(ApiKey.id)).all() == ["twin", BOOTSTRAP_NAME]
    finally:
        engine.dispose()


def _once_it_waits_for(first: Session, second: Callable[[], T]) -> T:
    """Run ``second`` in a thread; once PostgreSQL says ``first``'s transaction blocks it, commit that; then
    ``second``'s result."""
    engine = first.get_bind()
    first_pid = first.scalar(text("select pg_backend_pid()"))
    blocked = text("select count(*) from pg_stat_activity where :pid = any(pg_blocking_pids(pid))")
    with ThreadPoolExecutor(1) as pool:
        outcome = pool.submit(second)
        deadline = time.monotonic() + 10
        while True:
            with (
                engine.connect() as probe
            ):  # a new transaction each time: PostgreSQL keeps one snapshot per transaction
                if probe.scalar(blocked, {"pid": first_pid}):
                    break
            assert not outcome.done() and time.monotonic() < deadline, "the second transaction never waited"
            time.sleep(0.02)
        first.commit()
        return outcome.result(timeout=10)


def test_the_permission_table_names_every_scope():
    """The permission table names the scopes of their one home (``core.security.Scope``: the CLI's ``--scope``
    choices and the API's), no more, in their order."""
    from latfarm.services.api.auth import PERMISSIONS
    from latfarm.services.core.security import SCOPES

    assert tuple(PERMISSIONS) == SCOPES
