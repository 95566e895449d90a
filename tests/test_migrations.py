"""Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.store.db import make_engine
from services.store.migrate import upgrade
from services.store.models import Base


def test_upgrade_head_matches_models_and_is_idempotent(db_url):
    upgrade(db_url)
    upgrade(db_url)  # a second run finds nothing to do
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() is not None
            tables = set(inspect(conn).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        engine.dispose()


def test_lease_indexes_exist(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("jobs")}
    finally:
        engine.dispose()
    assert indexes["ix_jobs_queue"] == ["device_id", "state", "created_at", "id"]
    assert indexes["ix_jobs_expiry"] == ["state", "lease_expires_at"]
