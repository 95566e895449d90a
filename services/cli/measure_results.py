"""``latfarm measure``'s archs and results: archs checked before any request; a batch's items (the server lists
them in the order the archs were given) as lines or as CSV."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from latfarm.predictor.spaces import ArchError, get_space, index_column, other_space_hint

# The CSV's columns: each job's figures (INDEX: the arch's reference position, named after its space, e.g.
# nb201_index), then the conditions of its batch (the fields of domain.conditions.Conditions), then whether the
# job's arch was drawn at random (it calibrates adaptations). New columns go at the end: readers index by position.
ITEM_COLUMNS = ["arch", "INDEX", "state", "latency_ms", "statistic", "unstable", "attempts", "error"]
CONDITION_COLUMNS = ["batch_size", "precision", "graph", "resolution", "classes", "space"]
PROVENANCE_COLUMNS = ["drawn_at_random"]


def arch_values(given: Sequence[str]) -> list[str | int | list[int]]:
    """Command-line archs as the API takes them: integers (``-1`` too) are reference positions (NB201: official
    indices), whole numbers in brackets (``[0,1,2,3,4,0]``) index lists, anything else an arch string."""
    values: list[str | int | list[int]] = []
    for arch in given:
        if re.fullmatch(r"\s*-?\d+\s*", arch):
            values.append(int(arch))
        elif re.fullmatch(r"\s*\[\s*\d+(\s*,\s*\d+)*\s*\]\s*", arch):
            values.append([int(choice) for choice in arch.strip()[1:-1].split(",")])
        else:
            values.append(arch)
    return values


def canonical_archs(given: Sequence[str | int | list[int]], space: str = "nb201") -> list[str]:
    """Canonical strings of archs of ``space`` given as strings, index lists or reference-set positions (NB201:
    official indices), in order. Raises ``ArchError`` naming the bad one as the server does (``archs[i]: ...``), or
    ``UnknownSpace``."""
    searched = get_space(space)
    strings = []
    for i, arch in enumerate(given):
        try:
            strings.append(searched.to_string(searched.at(arch)) if isinstance(arch, int) else searched.canonical(arch))
        except ArchError as err:
            raise ArchError(f"archs[{i}]: {err}{other_space_hint(arch, space)}") from err
    return strings


def write_csv(path: Path, items: list[dict], conditions: dict) -> None:
    """One row per item: ``ITEM_COLUMNS`` (the index column named ``<space>_index``), the batch's ``conditions``
    (``CONDITION_COLUMNS``), then ``PROVENANCE_COLUMNS``; empty cells for figures a job does not have (queued,
    failed)."""
    index = index_column(conditions.get("space", "nb201"))
    columns = [index if c == "INDEX" else c for c in ITEM_COLUMNS] + CONDITION_COLUMNS + PROVENANCE_COLUMNS
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**conditions, **item, index: item.get("index")} for item in items)


def conditions_line(conditions: dict) -> str:
    """The conditions a batch was measured under (its answer's ``conditions``) where they are not its space's
    defaults, in one line, e.g. ``conditions: batch_size 4, precision int8 (nb201/32px/10cls/b4/int8/reference)``;
    '' when they all are (or the server sent none)."""
    from latfarm.services.domain.conditions import Conditions

    if not conditions.get("key"):
        return ""
    defaults = Conditions().for_space(conditions.get("space", "nb201")).to_dict()
    changed = [
        f"{name} {conditions[name]}"
        for name in CONDITION_COLUMNS
        if conditions.get(name, defaults[name]) != defaults[name]
    ]
    return f"conditions: {', '.join(changed)} ({conditions['key']})" if changed else ""


RANDOM_MARK = "*"  # the terminal's mark of an arch drawn at random (the CSV's and the API's drawn_at_random)
RANDOM_LEGEND = f"{RANDOM_MARK} drawn at random: its measurement calibrates adaptations' spread"


def lines(items: list[dict]) -> list[str]:
    """A batch's items for the terminal, one line each (``cells``) in columns as wide as their widest cell (a
    column empty in every line left out); when some were drawn at random, a mark column (``RANDOM_MARK`` on
    theirs) before the arch, and the last line is ``RANDOM_LEGEND``."""
    marked = any(item.get("drawn_at_random") for item in items)
    rows = [cells(item, marked) for item in items]
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    shown = [
        COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True) if width).rstrip()
        for row in rows
    ]
    return [*shown, RANDOM_LEGEND] if marked else shown


COLUMN_GAP = "  "


def cells(item: dict, marked: bool = False) -> list[str]:
    """One item's cells for the terminal: its latency (and statistic, an unstable mark) or its state, its index,
    with ``marked`` a cell that marks an arch drawn at random, then its arch (and error)."""
    if item.get("latency_ms") is None:
        figure = item["state"]
    else:
        figure = f"{item['latency_ms']:.4f} ms {item.get('statistic') or ''}".rstrip()
        figure += "  UNSTABLE" if item.get("unstable") else ""
    index = f"#{item['index']}" if item.get("index") is not None else ""
    mark = [RANDOM_MARK if item.get("drawn_at_random") else ""] if marked else []
    error = f"  ({item['error']})" if item.get("error") else ""
    return [figure, index, *mark, f"{item['arch']}{error}"]


def unstable_note(count: int, where: str = "the device") -> str:
    """What ``count`` unstable measurements on ``where`` mean, as a parenthesis after a count of measured archs ('' for
    none)."""
    if not count:
        return ""
    return f" ({count} unstable: {where} was busy, its round medians over 5% apart even after a retry)"


def prediction_line(item: dict) -> str:
    """One item of ``POST /v1/predict`` with an estimate, as ``latfarm predict`` prints it: latency, a prediction's
    standard deviation (blank for a measurement), source, UNSTABLE for an unstable measurement, arch, e.g.
    ``2.1034 ms ± 0.0913  predicted  |nor_conv_3x3~0|+...``."""
    spread = f"± {item['std_ms']:.4f}" if item["source"] == "predicted" and item.get("std_ms") is not None else ""
    unstable = "UNSTABLE  " if item.get("unstable") else ""
    return f"{item['latency_ms']:.4f} ms {spread:<8}  {item['source']:<9}  {unstable}{item['arch']}"


def adapted(state: dict, where: str = "the device") -> str:
    """An active adaptation's state (``GET /v1/devices/{name}/adapt``) in a few words: its measured archs (how many
    unstable on ``where``), its fit error and the archs its spread was calibrated on, if any, e.g. ``10 measured
    archs, fit error 1.4%, spread calibrated on 23 other archs``; one that measured random archs to calibrate on
    (``calibration``) and got too few measured says so."""
    from latfarm.predictor.calibration import MIN_CALIBRATION_ARCHS

    metrics = state.get("metrics") or {}
    unstable = unstable_note(metrics.get("unstable", 0), where)
    fit_error = metrics.get("fit_mean_abs_rel_error", 0.0)
    calibration = metrics.get("calibration_archs", 0)
    calibrated = f", spread calibrated on {calibration} other archs" if calibration else ""
    if not calibration and state.get("calibration"):
        calibrated = f", spread not calibrated: fewer than {MIN_CALIBRATION_ARCHS} other archs measured at random"
    return f"{state.get('samples')} measured archs{unstable}, fit error {fit_error:.1%}{calibrated}"


def summary(items: list[dict]) -> str:
    """A finished batch in one line: archs measured (how many unstable) and failed."""
    done = [item for item in items if item.get("state") == "done"]
    failed = sum(item.get("state") == "failed" for item in items)
    unstable = sum(bool(item.get("unstable")) for item in done)
    return f"{len(done)} measured{unstable_note(unstable)}, {failed} failed"
