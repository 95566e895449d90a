"""The PostgreSQL pool: a connection that died while idle in the pool is replaced before use, without an error."""

from __future__ import annotations

import time

from sqlalchemy import text

from latfarm.services.store import db
from latfarm.services.store.db import make_engine


def test_a_connection_killed_while_idle_is_replaced_before_use(pg_url, pg_admin_engine, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_S", 0.05)
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("select pg_backend_pid()")).scalar()
        with engine.connect() as conn:  # back at once: the same connection
            assert conn.execute(text("select pg_backend_pid()")).scalar() == first
        with pg_admin_engine.begin() as admin:
            admin.execute(text("select pg_terminate_backend(:pid)"), {"pid": first})
        time.sleep(0.1)  # idle past PING_IDLE_S: pinged, found dead, replaced
        with engine.connect() as conn:
            assert conn.execute(text("select pg_backend_pid()")).scalar() != first
    finally:
        engine.dispose()
