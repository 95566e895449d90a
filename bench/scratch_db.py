"""A throwaway PostgreSQL database for a benchmark run, created fresh and dropped at the end."""

from __future__ import annotations

import os


def create_pg(url: str, prefix: str) -> str:
    """A fresh database ``<prefix>_<pid>`` on the server of ``url`` (dropped first if left over); returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_pg(url: str, bench_url: str) -> None:
    """Drop the database of ``bench_url`` through the server of ``url``, closing its connections."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(bench_url).database}" WITH (FORCE)'))
    admin.dispose()
