"""Shared fixtures (real SQLite and PostgreSQL databases, real Redis, the shared HELP data) and the test kinds.

``tests/unit`` runs in this process: no child processes, no server listening on a port, no browser (a real
database or Redis connection is fine). ``tests/integration`` holds everything else: live REST and gRPC servers,
``latfarm`` and agent processes, Chromium, a fresh install; its tests get the ``integration`` marker here."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.models import Base

ROOT = Path(__file__).resolve().parents[1]
HELP_DIR = ROOT.parent / "shared" / "datasets" / "help-nb201"
PG_URL = os.environ.get("LATFARM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LATFARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ON_CI = bool(os.environ.get("CI"))
INTEGRATION = Path(__file__).resolve().parent / "integration"
pytest_plugins = ["tests.api_support"]  # REST API fixtures: api, keys


SERVICE_FIXTURES = {"postgres": {"pg_admin_engine", "pg_url"}, "redis": {"redis_url"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by what they need: ``integration`` for everything under ``tests/integration``; ``postgres`` and
    ``redis`` for tests that request the service's fixture or run a parameter case with that id (``db_url``'s
    ``postgres`` case, a ``redis`` case), so ``-m "not postgres"`` leaves out every test that needs the server."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
        case_ids = set(item.callspec.id.split("-")) if hasattr(item, "callspec") else set()
        for service, fixtures in SERVICE_FIXTURES.items():
            if service in case_ids or fixtures & set(getattr(item, "fixturenames", ())):
                item.add_marker(service)


def _absent(what: str, err: Exception) -> None:
    """Skip on a user's machine without the service; fail on CI, where .ci/run starts it."""
    if ON_CI:
        pytest.fail(f"{what} is required on CI but unreachable: {err}")
    pytest.skip(f"{what} not reachable ({err}); start it to run this test")


@pytest.fixture(scope="session")
def pg_admin_engine():
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as err:  # noqa: BLE001
        _absent("PostgreSQL at " + PG_URL, err)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin_engine):
    """A fresh PostgreSQL schema per test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with pg_admin_engine.begin() as conn:
        conn.execute(text(f"drop schema {schema} cascade"))


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'latfarm.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    """Each storage test runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def sessions(db_url):
    """A sessionmaker on a fresh database with the schema created."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as err:  # noqa: BLE001
        _absent("Redis at " + REDIS_URL, err)
    prefix_db = REDIS_URL
    yield prefix_db
    client.close()


@pytest.fixture(scope="session")
def help_dir():
    if not (HELP_DIR / "str_arch2idx.pt").exists():
        pytest.skip(f"shared HELP data not found at {HELP_DIR}")
    return HELP_DIR
