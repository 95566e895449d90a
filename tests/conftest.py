"""Shared fixtures (real SQLite and PostgreSQL databases, real Redis, the shared HELP data) and the test kinds.

``tests/unit`` runs in this process: no child processes, no server listening on a port, no browser (a real
database or Redis connection is fine). ``tests/integration`` holds everything else: live REST and gRPC servers,
``latfarm`` and agent processes, Chromium, a fresh install; its tests get the ``integration`` marker here."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url, text

from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.migrate import upgrade
from latfarm.services.store.models import Base

ROOT = Path(__file__).resolve().parents[1]
HELP_DIR = ROOT.parent / "shared" / "datasets" / "help-nb201"
PG_URL = os.environ.get("LATFARM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LATFARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ON_CI = bool(os.environ.get("CI"))
INTEGRATION = Path(__file__).resolve().parent / "integration"
pytest_plugins = ["tests.api_support"]  # REST API fixtures: api, keys


SERVICE_FIXTURES = {"postgres": {"pg_admin_engine", "pg_url"}, "redis": {"redis_url"}}
# Modules that build and install this checkout (setuptools writes build/ and *.egg-info into it): one at a time.
CHECKOUT_BUILDERS = {"test_readme_snippets.py", "test_agent_install.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by what they need: ``integration`` for everything under ``tests/integration``; ``postgres`` and
    ``redis`` for tests that request the service's fixture or run a parameter case with that id (``db_url``'s
    ``postgres`` case, a ``redis`` case), so ``-m "not postgres"`` leaves out every test that needs the server.

    For pytest-xdist (``--dist loadgroup``, as ``make test`` runs): a test using a module- or class-scoped fixture
    is grouped with its module (one worker builds that fixture once), the checkout builders share one group, and
    the slow tests are sent first so the long ones do not trail the run."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
        case_ids = set(item.callspec.id.split("-")) if hasattr(item, "callspec") else set()
        for service, fixtures in SERVICE_FIXTURES.items():
            if service in case_ids or fixtures & set(getattr(item, "fixturenames", ())):
                item.add_marker(service)
        if item.path.name in CHECKOUT_BUILDERS:
            item.add_marker(pytest.mark.xdist_group("checkout-build"))
        elif _uses_shared_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    if getattr(config.option, "dist", "no") != "no":
        items.sort(
            key=lambda item: (item.get_closest_marker("slow") is None, item.get_closest_marker("integration") is None)
        )


def _uses_shared_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture shared by several tests of its module (module, class or package scope)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d.scope in ("module", "class", "package") for fixture_defs in defs for d in fixture_defs)


def _absent(what: str, err: Exception) -> None:
    """Skip on a user's machine without the service; fail on CI, where .ci/run starts it."""
    if ON_CI:
        pytest.fail(f"{what} is required on CI but unreachable: {err}")
    pytest.skip(f"{what} not reachable ({err}); start it to run this test")


def needs_extra(module: str, extra: str) -> None:
    """Skip on a user's machine without the package extra whose ``module`` a test needs; fail on CI, where
    .ci/run installs it (``make tflite``)."""
    if importlib.util.find_spec(module) is not None:
        return
    if ON_CI:
        pytest.fail(f"the {extra!r} extra ({module}) is required on CI but not installed")
    pytest.skip(f"the {extra!r} extra ({module}) is not installed: see docs/agents.md#tflite-models")


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


@contextmanager
def _pg_schema(admin_engine: Engine) -> Iterator[str]:
    """The URL of a fresh PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin_engine.begin() as conn:
        conn.execute(text(f"create schema {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin_engine.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))


@pytest.fixture
def pg_url(pg_admin_engine):
    """A fresh PostgreSQL schema per test, dropped afterwards."""
    with _pg_schema(pg_admin_engine) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'latfarm.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    """Each storage test runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


UpgradeScript = list[tuple[str, Any]]  # (SQL as the driver received it, its parameters), in order


def _changes_the_database(statement: str) -> bool:
    """False for reads (SELECT, a PRAGMA without ``=``) and transaction control (BEGIN: the replaying engine's)."""
    head = statement.lstrip().upper()
    return not (head.startswith(("SELECT", "BEGIN")) or (head.startswith("PRAGMA") and "=" not in head))


def record_upgrade(url: str) -> UpgradeScript:
    """Run the real migrations on the empty database at ``url``; returns the statements they sent it that change
    it."""
    script: UpgradeScript = []
    target = make_url(url)

    def record(conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if conn.engine.url == target and _changes_the_database(statement):  # not another engine's (a leftover thread)
            script.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        upgrade(url)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return script


def replay_upgrade(url: str, script: UpgradeScript) -> None:
    """Send ``script`` (recorded on the same kind of database) to the empty database at ``url``, in one
    transaction."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement, parameters in script:
                conn.exec_driver_sql(statement, parameters)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def upgrade_scripts() -> dict[str, UpgradeScript]:
    """Per backend (``sqlite``, ``postgresql``), the migrations' statements, recorded once per test process."""
    return {}


@pytest.fixture
def migrated_db_url(request, db_url, upgrade_scripts, tmp_path_factory):
    """``db_url`` at the head migration, as the server's startup upgrade leaves it (which then has nothing to do):
    the migrations run once per test process on an empty database and their statements are replayed here. For
    tests of what runs on the schema; ``test_migrations`` runs the migrations themselves."""
    backend = make_url(db_url).get_backend_name()
    if backend not in upgrade_scripts:
        if backend == "sqlite":
            upgrade_scripts[backend] = record_upgrade(f"sqlite:///{tmp_path_factory.mktemp('recorded')}/latfarm.db")
        else:
            with _pg_schema(request.getfixturevalue("pg_admin_engine")) as url:
                upgrade_scripts[backend] = record_upgrade(url)
    replay_upgrade(db_url, upgrade_scripts[backend])
    return db_url


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
