"""Import the shared HELP data (21 devices x 15,625 archs) into SQLite and PostgreSQL; print the times.

PostgreSQL: ``LATFARM_TEST_PG_URL`` (default the local test server), in a scratch schema dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from latfarm.services.datasets.help import import_help
from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
from latfarm.services.store.migrate import upgrade

HELP_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "help-nb201"
PG_URL = os.environ.get("LATFARM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def timed_import(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        factory = make_sessionmaker(engine)
        for label in ("first import", "second import (idempotent)"):
            start = time.perf_counter()
            with transaction(factory) as session:
                imported = import_help(session, HELP_DIR, progress=False)
            seconds = time.perf_counter() - start
            print(f"  {label}: {imported.added} rows ({imported.present} already present) in {seconds:.1f} s")
    finally:
        engine.dispose()


def main() -> None:
    import torch  # noqa: F401  (loaded up front so its import time is not counted)

    devices = len(list((HELP_DIR / "latency").glob("*.pt")))
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {devices} devices:")
        timed_import(f"sqlite:///{Path(tmp) / 'bench.db'}")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"create schema {schema}"))
    except Exception as err:  # noqa: BLE001
        print(f"PostgreSQL skipped: {err.__class__.__name__}: {err}")
        return
    try:
        print(f"PostgreSQL, {devices} devices:")
        sep = "&" if "?" in PG_URL else "?"
        timed_import(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"drop schema {schema} cascade"))
        admin.dispose()


if __name__ == "__main__":
    main()
