"""Datasets to and from the store named by Settings: migrate it, pick the importer or writer by format, run it.

Nothing here prints or exits; bad input raises ``DatasetError``. ``services/cli/data.py`` wraps these for the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from latfarm.predictor import nb201
from latfarm.predictor.spaces import UnknownSpace, get_space
from latfarm.services.core.config import Settings
from latfarm.services.datasets.csvrows import CSV, checked_space, import_csv
from latfarm.services.datasets.help import HELP, dataset_of, import_help
from latfarm.services.datasets.hwnasbench import HWNASBENCH, import_hwnasbench
from latfarm.services.datasets.latbench import LATBENCH, import_latbench
from latfarm.services.datasets.rows import DatasetError
from latfarm.services.datasets.writers import device_rows, export_file

FORMATS = {"help": HELP, "latbench": LATBENCH, "hwnasbench": HWNASBENCH, "csv": CSV}  # import format -> dataset name
EXPORT_FORMATS = ("csv", "latbench")


def open_store(settings: Settings) -> tuple[Engine, sessionmaker]:
    """Engine and sessions on the settings' database, migrated to the current schema first."""
    from latfarm.services.store.db import make_engine, make_sessionmaker
    from latfarm.services.store.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)


def check_options(
    fmt: str, *, space: str | None = None, copy: bool = False, devices: Sequence[str] | None = None
) -> None:
    """An import's options against its format ``fmt`` (one of ``FORMATS``), before anything is read or opened:
    ``DatasetError`` whose message starts with the option it refuses (``--space: hwnasbench data is nb201 data,
    not fbnet``)."""
    if fmt == "hwnasbench" and space not in (None, nb201.SPACE):
        raise DatasetError(f"--space: {fmt} data is nb201 data, not {space}")
    if copy and fmt not in ("latbench", "csv"):
        raise DatasetError(f"--copy: {fmt} data names its devices itself; --copy is for a LatBench or CSV file")
    if fmt != "help" and devices:
        raise DatasetError(f"--device: {fmt} takes one device name (LatBench, CSV) or none")


def import_into_store(
    settings: Settings,
    path: Path,
    fmt: str = "help",
    device: str | None = None,
    space: str | None = None,
    devices: Sequence[str] = (),
    copy: bool = False,
) -> dict:
    """Import one dataset in one transaction; returns ``{format, dataset, rows_added, already_present, seconds}``.

    ``already_present`` counts the entries skipped because the device has a row of the arch under the same
    conditions (``rows.add_rows``); ``seconds`` times the import itself, not the migration before it. ``device``
    names a LatBench or CSV file's device; ``devices`` picks a HELP folder's devices (default all). ``space``: the
    search space of a HELP folder or a LatBench pickle (default NB201; HW-NAS-Bench is NB201 data: another space is
    refused; a CSV names its own, which a given ``space`` must be). ``copy``: import a LatBench or CSV file imported
    as another device before under ``device`` too (``rows.claim_file``).
    """
    from latfarm.services.store.db import transaction

    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {', '.join(sorted(FORMATS))}")
    check_options(fmt, space=space, copy=copy, devices=devices)
    if fmt == "csv":
        checked_space(Path(path), space)  # before the store is opened: a contradiction creates nothing
    engine, factory = open_store(settings)
    start = time.perf_counter()
    try:
        with transaction(factory) as session:
            if fmt == "help":
                imported = import_help(session, Path(path), space=space or nb201.SPACE, devices=devices)
            elif fmt == "latbench":
                imported = import_latbench(session, Path(path), device, space=space or nb201.SPACE, copy=copy)
            elif fmt == "csv":
                imported = import_csv(session, Path(path), device, space, copy=copy)
            else:
                imported = import_hwnasbench(session, Path(path))
    finally:
        engine.dispose()
    dataset = dataset_of(space or nb201.SPACE) if fmt == "help" else FORMATS[fmt]
    return {
        "format": fmt,
        "dataset": dataset,
        "rows_added": imported.added,
        "already_present": imported.present,
        "seconds": time.perf_counter() - start,
    }


def export_from_store(settings: Settings, device: str, fmt: str, out: Path, space: str = "nb201") -> int:
    """Write a device's measurements of ``space`` to ``out`` as CSV (all, with their conditions) or a LatBench
    pickle (only those under the device's own conditions, one entry per arch); returns how many entries were written
    (CSV: measurements; LatBench: archs)."""
    if fmt not in EXPORT_FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    try:
        get_space(space)
    except UnknownSpace as err:
        raise DatasetError(f"--space: {err}", field="space") from err
    engine, factory = open_store(settings)
    try:
        with factory() as session:
            rows = device_rows(session, device, own_conditions=fmt == "latbench", space=space)
    finally:
        engine.dispose()
    body, entries = export_file(rows, fmt, space)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    return entries
