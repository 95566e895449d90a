"""Time the one-device rule's check (``datasets.rows.claim_file``) on a store of 21 devices x 15,625 imported rows
(HELP's size), SQLite and PostgreSQL, beside the scan of the rows' provenance it replaced; print the times.

The rows and records are synthetic (one file per device); the checked file is new, so the check also writes its
record (rolled back). PostgreSQL: ``LATFARM_TEST_PG_URL`` (default the local test server), in a scratch database.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from pathlib import Path

from scratch_db import create_pg, drop_pg  # bench/ is the script's folder: on sys.path
from sqlalchemy import select, text

from latfarm.services.datasets.rows import claim_file, file_provenance
from latfarm.services.store.db import make_engine, make_sessionmaker
from latfarm.services.store.migrate import upgrade
from latfarm.services.store.models import Device, Measurement, Source

PG_URL = os.environ.get("LATFARM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DEVICES, ARCHS, REPEATS = 21, 15625, 5


def fill(url: str) -> None:
    """``DEVICES`` devices, each with ``ARCHS`` rows imported from its own file and that file's record."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("insert into archs (id, space, arch) values (:id, 'nb201', :arch)"),
                [{"id": i, "arch": f"a{i}"} for i in range(1, ARCHS + 1)],
            )
            for device in range(1, DEVICES + 1):
                digest, now = f"{device:064x}", "2026-12-03 00:00:00+00"
                conn.execute(
                    text(
                        "insert into devices (id, name, description, hardware, runtime, precision, batch_size,"
                        " created_at) values (:id, :name, '', '', 'onnxruntime', 'fp32', 1, :now)"
                    ),
                    {"id": device, "name": f"dev{device}", "now": now},
                )
                conn.execute(
                    text(
                        "insert into measurements (device_id, arch_id, source, dataset, protocol, latency_ms,"
                        " median_ms, round_medians_ms, unstable, quarantined, provenance, conditions, conditions_key,"
                        " created_at) select :device, id, 'imported', 'latbench', '{}', 1.0, 1.0, '[]', false, false,"
                        " :provenance, '{}', 'k', :now from archs"
                    ),
                    {"device": device, "provenance": f'{{"file": "f{device}", "sha256": "{digest}"}}', "now": now},
                )
                conn.execute(
                    text(
                        "insert into imported_files (sha256, device_id, format, space, file, imported_at)"
                        " values (:digest, :device, 'latbench', 'nb201', :file, :now)"
                    ),
                    {"digest": digest, "device": device, "file": f"f{device}", "now": now},
                )
            if engine.dialect.name == "postgresql":
                conn.execute(text("analyze"))
    finally:
        engine.dispose()


def timed_checks(url: str, path: Path) -> None:
    fill(url)
    provenance = file_provenance(path)
    scan = (
        select(Device.name)
        .join(Measurement, Measurement.device_id == Device.id)
        .where(
            Measurement.source == Source.imported, Measurement.provenance["sha256"].as_string() == provenance["sha256"]
        )
        .distinct()
    )
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            device = session.get(Device, 1)
            assert device is not None
            checks = {
                "claim_file (imported_files, by index)": lambda: claim_file(
                    session, path, provenance, device, "latbench", "nb201", False
                ),
                "provenance scan (before)": lambda: session.scalars(scan).all(),
            }
            for label, check in checks.items():
                times = []
                for _ in range(REPEATS):
                    start = time.perf_counter()
                    check()
                    times.append(time.perf_counter() - start)
                    session.rollback()
                print(f"  {label}: " + ", ".join(f"{seconds * 1000:.1f}" for seconds in times) + " ms")
    finally:
        engine.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "new.pickle"
        path.write_bytes(pickle.dumps({(0, 0, 0, 0, 0, 0): 0.01}))
        print(f"SQLite, {DEVICES * ARCHS} rows:")
        timed_checks(f"sqlite:///{Path(tmp) / 'bench.db'}", path)
        try:
            url = create_pg(PG_URL, "bench_claim")
        except Exception as err:  # noqa: BLE001
            print(f"PostgreSQL skipped: {err.__class__.__name__}: {err}")
            return
        try:
            print(f"PostgreSQL, {DEVICES * ARCHS} rows:")
            timed_checks(url, path)
        finally:
            drop_pg(PG_URL, url)


if __name__ == "__main__":
    main()
