"""``latfarm measure``'s results: a batch's items in the order the archs were given, as lines or as CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from latfarm.predictor import nb201

# The CSV's columns: each job's figures, then the conditions of its batch (the fields of domain.conditions.Conditions).
ITEM_COLUMNS = ["arch", "nb201_index", "state", "latency_ms", "statistic", "unstable", "attempts", "error"]
CONDITION_COLUMNS = ["batch_size", "precision", "graph", "resolution", "classes", "space"]


def canonical_archs(given: Sequence[str | int]) -> list[str]:
    """Arch strings (``nb201.to_string`` form) of arch strings or NB201 indices, in order.

    Raises ``nb201.ArchError`` naming a bad one."""
    return [nb201.to_string(nb201.from_official_index(a)) if isinstance(a, int) else nb201.canonical(a) for a in given]


def in_input_order(items: list[dict], archs: Sequence[str]) -> list[dict]:
    """``items`` (the server's job items, one per distinct arch, in no set order) ordered by the first place their
    arch has in ``archs`` (canonical strings); items of archs not given keep their order, last."""
    position: dict[str, int] = {}
    for place, arch in enumerate(archs):
        position.setdefault(arch, place)
    return sorted(items, key=lambda item: position.get(item["arch"], len(archs)))


def write_csv(path: Path, items: list[dict], conditions: dict) -> None:
    """One row per item: ``ITEM_COLUMNS`` then the batch's ``conditions`` (``CONDITION_COLUMNS``); empty cells
    for figures a job does not have (queued, failed)."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, ITEM_COLUMNS + CONDITION_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**conditions, **item} for item in items)


def line(item: dict) -> str:
    """One item for the terminal: its latency (and statistic, an unstable mark) or its state, then its arch."""
    if item.get("latency_ms") is None:
        figure = item["state"]
    else:
        figure = f"{item['latency_ms']:.4f} ms {item.get('statistic') or ''}".rstrip()
        figure += "  UNSTABLE" if item.get("unstable") else ""
    index = f"#{item['nb201_index']}" if item.get("nb201_index") is not None else ""
    error = f"  ({item['error']})" if item.get("error") else ""
    return f"{figure:<24} {index:<7} {item['arch']}{error}"
