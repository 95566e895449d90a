"""Datasets to and from the store named by Settings: migrate it, pick the importer or writer by format, run it.

Nothing here prints or exits; bad input raises ``DatasetError``. ``services/cli/data.py`` wraps these for the CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from latfarm.services.core.config import Settings
from latfarm.services.datasets.help import HELP, import_help
from latfarm.services.datasets.hwnasbench import HWNASBENCH, import_hwnasbench
from latfarm.services.datasets.latbench import LATBENCH, import_latbench
from latfarm.services.datasets.rows import DatasetError
from latfarm.services.datasets.writers import device_rows, to_csv, to_latbench_pickle

FORMATS = {"help": HELP, "latbench": LATBENCH, "hwnasbench": HWNASBENCH}  # import format -> dataset name
EXPORT_FORMATS = ("csv", "latbench")


def open_store(settings: Settings) -> tuple[Engine, sessionmaker]:
    """Engine and sessions on the settings' database, migrated to the current schema first."""
    from latfarm.services.store.db import make_engine, make_sessionmaker
    from latfarm.services.store.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)


def import_into_store(settings: Settings, path: Path, fmt: str = "help", device: str | None = None) -> dict:
    """Import one dataset in one transaction; returns ``{format, dataset, rows_added, seconds}``.

    ``seconds`` times the import itself, not the migration before it. ``device`` names a LatBench file's device.
    """
    from latfarm.services.store.db import transaction

    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {sorted(FORMATS)}")
    engine, factory = open_store(settings)
    start = time.perf_counter()
    try:
        with transaction(factory) as session:
            if fmt == "help":
                added = import_help(session, Path(path))
            elif fmt == "latbench":
                added = import_latbench(session, Path(path), device)
            else:
                added = import_hwnasbench(session, Path(path))
    finally:
        engine.dispose()
    return {"format": fmt, "dataset": FORMATS[fmt], "rows_added": added, "seconds": time.perf_counter() - start}


def export_from_store(settings: Settings, device: str, fmt: str, out: Path) -> int:
    """Write a device's measurements to ``out`` as CSV (all, with their conditions) or a LatBench pickle (only those
    under the device's own conditions); returns how many were written."""
    if fmt not in EXPORT_FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}")
    engine, factory = open_store(settings)
    try:
        with factory() as session:
            rows = device_rows(session, device, own_conditions=fmt == "latbench")
    finally:
        engine.dispose()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        out.write_text(to_csv(rows))
    else:
        out.write_bytes(to_latbench_pickle(rows))
    return len(rows)
