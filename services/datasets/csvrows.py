"""CSV importer: latfarm's own CSV export (``writers.to_csv``) read back, for a device named by the caller.

The header is an export's columns (``writers.row_fields``): its ``<space>_index`` column names the space; ``arch``,
``latency_ms`` and the condition columns are required, any other export column may be left out, and a column no
export writes is refused. Each line's figure is ``latency_ms`` under the conditions written on that line; an
``ops`` value, when given, must be the arch's encoding. An arch's one line under its conditions comes in with what
else it carries where the store has a column for it (``DETAILS``: the other figures, ``runs``, ``unstable``, the
setup and first-use timings, checked as an agent's report is, ``domain.results``; ``statistic`` into the row's
protocol) and where it came from (``ORIGIN``: source, dataset, agent, job, artifact, time) in the row's
``provenance['origin']``. Several lines of one arch under the same conditions come in as their median (one figure,
as ``writers.to_latbench``), without the rest. Then ``rows.add_rows`` (one figure per arch and conditions). The
rows' dataset is ``csv``.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from latfarm.common.ranges import out_of_range, within
from latfarm.predictor.latencies import BOUNDS as LATENCY_BOUNDS
from latfarm.predictor.spaces import ArchError, get_space, index_column
from latfarm.proto.v1.names import STATISTICS
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.datasets.rows import (
    DatasetError,
    Imported,
    add_rows,
    checked_ms,
    claim_file,
    ensure_device,
    file_provenance,
    take_turn,
)
from latfarm.services.datasets.writers import CONDITION_FIELDS, ops_cell, row_fields
from latfarm.services.domain.conditions import RANGES, SPACES, Conditions
from latfarm.services.domain.results import DURATION_BOUNDS, FIGURES, FIRST_USE, LATENCIES, ORDER, SETUP
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.models import Measurement

CSV = "csv"
REQUIRED = ("arch", "latency_ms", *CONDITION_FIELDS)
DETAILS = (*FIGURES, *SETUP, *FIRST_USE)  # columns of the row, as an agent reports them
ORIGIN = ("source", "dataset", "agent_id", "job_id", "artifact_sha256", "created_at")  # into provenance['origin']
ORIGIN_LENGTH = 128  # characters, at most, of an origin cell
Line = dict[str, Any]  # one line's latency_ms, details (DETAILS, protocol) and origin


def _space_of(path: Path, header: list[str]) -> str:
    """The space whose ``<space>_index`` column the header holds; ``DatasetError`` naming line 1 when the header
    is not an export's (no such column, several, a repeated column, an unknown or a missing one)."""
    where = f"{path}: line 1"
    spaces = [space for space in SPACES if index_column(space) in header]
    if len(spaces) != 1:
        expected = " | ".join(index_column(space) for space in SPACES)
        raise DatasetError(f"{where}: expected one of the columns {expected} (a latfarm CSV export's header)")
    space = spaces[0]
    known = row_fields(space)
    if repeated := sorted({name for name in header if header.count(name) > 1}):
        raise DatasetError(f"{where}: column {repeated[0]!r} appears more than once")
    if unknown := [name for name in header if name not in known]:
        raise DatasetError(f"{where}: unknown column {unknown[0]!r}; a {space} export's columns: {', '.join(known)}")
    if missing := [name for name in REQUIRED if name not in header]:
        raise DatasetError(f"{where}: missing column {missing[0]!r}; required: {', '.join(REQUIRED)}")
    return space


def _conditions(row: dict[str, str], space: str, where: str) -> Conditions:
    """The line's conditions; ``DatasetError`` naming the column of a bad value."""
    values: dict[str, object] = {name: row[name].strip() for name in CONDITION_FIELDS}
    for name in RANGES:  # the integer conditions
        try:
            values[name] = int(str(values[name]))
        except ValueError:
            raise DatasetError(f"{where}, column {name}: {values[name]!r} is not an integer") from None
    try:
        return Conditions(space=space, **values)  # type: ignore[arg-type]
    except InvalidArgument as err:
        raise DatasetError(f"{where}, column {err.field or 'conditions'}: {err.message}") from err


def _latency(text: str, where: str) -> float:
    """The line's ``latency_ms``, checked by the latency rule (``rows.checked_ms``)."""
    where = f"{where}, column latency_ms"
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: {text!r:.40} is not a number") from None
    return checked_ms(value, where)[0]


def _detail(name: str, text: str, where: str) -> Any:
    """One ``DETAILS`` cell as the store keeps it (empty: None), within an agent report's bounds
    (``domain.results``); ``DatasetError`` naming the column otherwise."""
    where = f"{where}, column {name}"
    if name == "unstable":
        if text not in ("True", "False"):
            raise DatasetError(f"{where}: expected True or False, got {text!r:.40}")
        return text == "True"
    if name in ("runs", "threads"):
        try:
            value: Any = int(text)
        except ValueError:
            raise DatasetError(f"{where}: {text!r:.40} is not an integer") from None
        if value < 1:
            raise DatasetError(f"{where}: {out_of_range(value, {'ge': 1})}")
        return value
    if name in SETUP:
        if len(text) > (length := Measurement.__table__.c[name].type.length):  # type: ignore[attr-defined]
            raise DatasetError(f"{where}: longer than {length} characters")
        return text
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: {text!r:.40} is not a number") from None
    bounds = LATENCY_BOUNDS if name in LATENCIES else DURATION_BOUNDS
    if not within(value, bounds):
        raise DatasetError(f"{where}: {out_of_range(value, bounds, 'ms')}")
    return value


def _line(row: dict[str, str], where: str) -> Line:
    """The line's figure, details and origin (``Line``); ``DatasetError`` naming the column of a bad value."""
    line: Line = {"latency_ms": _latency(row["latency_ms"], where)}
    for name in DETAILS:
        if text := row.get(name, "").strip():
            line[name] = _detail(name, text, where)
    for lower, upper in ORDER:
        if (low := line.get(lower)) is not None and (high := line.get(upper)) is not None and low > high:
            raise DatasetError(f"{where}, column {lower}: {lower} {low} exceeds {upper} {high}")
    if statistic := row.get("statistic", "").strip():
        if statistic not in STATISTICS:
            raise DatasetError(
                f"{where}, column statistic: expected one of {', '.join(STATISTICS)}, got {statistic!r:.40}"
            )
        line["protocol"] = {"statistic": statistic}
    origin = {name: text for name in ORIGIN if (text := row.get(name, "").strip())}
    if long := [name for name, text in origin.items() if len(text) > ORIGIN_LENGTH]:
        raise DatasetError(f"{where}, column {long[0]}: longer than {ORIGIN_LENGTH} characters")
    line["provenance"] = {"origin": origin} if origin else {}
    return line


def read_csv(path: Path) -> tuple[str, dict[str, tuple[Conditions, dict[str, list[Line]]]]]:
    """(space, {conditions key: (conditions, {canonical arch: its lines})}) of an export CSV; a bad line raises
    ``DatasetError`` naming the file, line and column."""
    space, header, reader = _open(path)
    searched = get_space(space)
    groups: dict[str, tuple[Conditions, dict[str, list[Line]]]] = {}
    try:
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if None in row or None in row.values():
                raise DatasetError(f"{where}: expected {len(header)} fields, as the header has")
            try:
                encoding = searched.parse(row["arch"].strip())
            except ArchError as err:
                raise DatasetError(f"{where}, column arch: {err}") from err
            ops = row.get("ops", "").strip()
            if ops and ops != ops_cell(encoding):
                raise DatasetError(f"{where}, column ops: {ops!r} is not the encoding of arch {row['arch']!r}")
            conditions = _conditions(row, space, where)
            by_arch = groups.setdefault(conditions.key, (conditions, {}))[1]
            by_arch.setdefault(searched.to_string(encoding), []).append(_line(row, where))
    except csv.Error as err:
        raise DatasetError(f"{path}: line {reader.line_num}: {err}") from err
    if not groups:
        raise DatasetError(f"{path}: no rows below the header")
    return space, groups


def _open(path: Path) -> tuple[str, list[str], csv.DictReader]:
    """(space, header, reader past the header) of an export CSV; ``DatasetError`` for a folder, text that is not
    UTF-8, an empty file or a header that is not an export's (``_space_of``)."""
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; --format csv reads a CSV file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    if not header:
        raise DatasetError(f"{path}: empty; expected a latfarm CSV export (a header line, then a line per row)")
    return _space_of(path, header), header, reader


def space_of(path: Path) -> str:
    """The search space an export CSV holds (its ``<space>_index`` column); ``DatasetError`` as ``read_csv``'s
    header check."""
    return _open(Path(path))[0]


def checked_space(path: Path, space: str | None) -> str:
    """The file's space (``space_of``), which a given ``space`` must be: ``DatasetError`` (field ``space``) naming
    both when it contradicts the file."""
    found = space_of(path)
    if space is not None and space != found:
        raise DatasetError(
            f"--space {space}: {path} holds {found} data (its {index_column(found)} column); drop --space or give "
            f"--space {found}",
            field="space",
        )
    return found


def import_csv(
    session: Session, path: Path, device: str | None = None, space: str | None = None, copy: bool = False
) -> Imported:
    """Import a latfarm CSV export for ``device`` (default: the file's stem); returns rows added and entries
    present (``rows.add_rows``, one entry per arch and conditions). ``space``, when given, must be the file's
    (``checked_space``); a file imported as another device before is refused unless ``copy``
    (``rows.claim_file``).

    All-or-nothing: any bad line raises ``DatasetError`` before a row is written.
    """
    path = Path(path)
    checked_space(path, space)
    space, groups = read_csv(path)
    archs = [arch for _, by_arch in groups.values() for arch in by_arch]
    provenance = file_provenance(path)
    take_turn(session)
    ids = ensure_archs(session, archs, space)
    target = ensure_device(session, device or path.stem, CSV)
    claim_file(session, path, provenance, target, CSV, space, copy)
    imported = Imported()
    for conditions, by_arch in groups.values():
        latencies = {
            ids[arch]: statistics.median(line["latency_ms"] for line in lines) for arch, lines in by_arch.items()
        }
        details = {ids[arch]: _details(lines, provenance) for arch, lines in by_arch.items()}
        imported += add_rows(session, target, CSV, latencies, conditions, details=details)
    return imported


def _details(lines: list[Line], provenance: dict[str, str]) -> Line:
    """An arch's row details (``add_rows``): one line's columns but its figure, with the file's ``provenance``
    beside the line's origin; of several lines, the file's provenance only."""
    if len(lines) > 1:
        return {"provenance": provenance}
    line = {name: value for name, value in lines[0].items() if name != "latency_ms"}
    return {**line, "provenance": {**provenance, **line["provenance"]}}
