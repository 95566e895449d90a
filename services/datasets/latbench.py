"""LatBench importer: one pickle ``{encoding tuple: seconds}`` per device, named after the file unless given.

LatBench's own files are NB201's (6-op tuples); ``latfarm export data --format latbench --space fbnet`` writes
FBNet's (22 block indices), which import with ``space="fbnet"``. A value is one figure (seconds) or the runs behind
it, as raw LatBench keeps them: a list or numpy array of runs, possibly nested per round (``[[.0021, .0022], [.0023,
.0021]]``). Runs are summarised by their **median** over all runs of all rounds (LatBench's own statistic) and the
run count is kept in the row's ``runs``. LatBench measured the reference network; its rows get the device's
conditions for the space (batch size, precision).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import ArchError, get_space
from latfarm.services.datasets.rows import (
    DatasetError,
    Imported,
    add_rows,
    checked_ms,
    claim_file,
    ensure_device,
    file_provenance,
    first_non_number,
    load_pickle,
    take_turn,
)
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import ensure_archs

LATBENCH = "latbench"


def _is_op_id(value: object) -> bool:
    """Op ids are integers (Python or numpy), never bools, floats or strings."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def summarised_runs(value: object, where: str) -> tuple[float, int]:
    """(median ms, run count) of one LatBench value in seconds: a number, or a (nested) list / array of runs.

    Raises ``DatasetError`` naming ``where`` for no runs, ragged runs, a run that is not a number (bools and text
    included), or a run against the latency rule (positive, finite).
    """
    expected = f"{where}: expected seconds or a list of runs in seconds, found {value!r:.60}"
    if first_non_number(value) is not None:
        raise DatasetError(expected)
    try:
        runs = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:  # ragged runs
        raise DatasetError(expected) from err
    if runs.size == 0:
        raise DatasetError(f"{where}: no runs (an empty list)")
    return float(np.median(np.asarray(checked_ms(runs, where, scale=1000.0)))), int(runs.size)


def import_latbench(
    session: Session, path: Path, device: str | None = None, space: str = "nb201", copy: bool = False
) -> Imported:
    """Import one LatBench pickle ``{encoding tuple: seconds or runs}`` of ``space`` for ``device`` (default: the
    file's stem); returns rows added and entries present (``rows.add_rows``). A file imported as another device
    before is refused unless ``copy`` (``rows.claim_file``).

    All-or-nothing: an empty dict, or any bad key or value, raises ``DatasetError`` before a row is written.
    """
    path = Path(path)
    searched = get_space(space)
    layout = f"{{{searched.length}-entry {space} encoding tuple: seconds}}"
    data = load_pickle(path, "latbench")
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: expected a dict {layout}, found {type(data).__name__}")
    if not data:
        raise DatasetError(f"{path}: no entries (an empty dict); expected {layout}")
    summaries: dict[str, tuple[float, int]] = {}
    for ops, value in data.items():
        if not isinstance(ops, tuple | list) or not all(_is_op_id(o) for o in ops):
            raise DatasetError(f"{path}: key {ops!r}: expected a tuple of {searched.length} integers ({space})")
        try:
            arch = searched.to_string(ops)
        except ArchError as err:
            raise DatasetError(f"{path}: key {ops!r}: {err}") from err
        summaries[arch] = summarised_runs(value, f"{path}: key {ops!r}")
    provenance = file_provenance(path)
    take_turn(session)
    ids = ensure_archs(session, summaries, space)
    target = ensure_device(session, device or path.stem, LATBENCH)
    claim_file(session, path, provenance, target, LATBENCH, space, copy)
    latencies = {ids[a]: ms for a, (ms, _) in summaries.items()}
    runs = {ids[a]: {"runs": count, "provenance": provenance} for a, (_, count) in summaries.items()}
    return add_rows(session, target, LATBENCH, latencies, conditions_of(target).for_space(space), details=runs)
