"""The bodies of ``latfarm import`` and ``latfarm export data``: run ``store``'s function, print its summary.

Bad input exits with the ``DatasetError`` message (no traceback); library callers use ``store`` or the importers.
"""

from __future__ import annotations

from pathlib import Path

from latfarm.services.core.config import Settings
from latfarm.services.datasets.rows import DatasetError
from latfarm.services.datasets.store import export_from_store, import_into_store


def import_dataset(settings: Settings, path: Path, fmt: str = "help", device: str | None = None) -> dict:
    """``latfarm import``: migrate the store, import one dataset in one transaction, print and return a summary."""
    try:
        summary = import_into_store(settings, path, fmt=fmt, device=device)
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from err
    added, dataset, seconds = summary["rows_added"], summary["dataset"], summary["seconds"]
    print(f"imported {added} new measurements from {path} ({dataset}) in {seconds:.1f} s")
    return summary


def export_dataset(settings: Settings, device: str, fmt: str, out: Path) -> None:
    """``latfarm export data``: write a device's measurements as CSV or a LatBench pickle and say how many."""
    try:
        written = export_from_store(settings, device, fmt, out)
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from err
    print(f"wrote {written} measurements of {device} to {out}")
