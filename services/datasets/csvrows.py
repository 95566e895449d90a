"""CSV importer: latfarm's own CSV export (``writers.to_csv``) read back, for a device named by the caller.

The header is an export's columns (``writers.row_fields``): its ``<space>_index`` column names the space; ``arch``,
``latency_ms`` and the condition columns are required, any other export column may be left out, and a column no
export writes is refused. Each line's figure is ``latency_ms`` under the conditions written on that line; an
``ops`` value, when given, must be the arch's encoding. Lines of one arch under the same conditions come in as
their median (one figure, as ``writers.to_latbench``), then through ``rows.add_rows`` (one figure per arch and
conditions). The other columns (source, dataset, the other figures, setup, times) are not read. The rows' dataset
is ``csv``.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from sqlalchemy.orm import Session

from latfarm.predictor.spaces import ArchError, get_space, index_column
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.datasets.rows import DatasetError, Imported, add_rows, checked_ms, ensure_device
from latfarm.services.datasets.writers import CONDITION_FIELDS, ops_cell, row_fields
from latfarm.services.domain.conditions import RANGES, SPACES, Conditions
from latfarm.services.store.crud import ensure_archs

CSV = "csv"
REQUIRED = ("arch", "latency_ms", *CONDITION_FIELDS)


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


def read_csv(path: Path) -> tuple[str, dict[str, tuple[Conditions, dict[str, list[float]]]]]:
    """(space, {conditions key: (conditions, {canonical arch: its lines' latencies})}) of an export CSV; a bad line
    raises ``DatasetError`` naming the file, line and column."""
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
    space = _space_of(path, header)
    searched = get_space(space)
    groups: dict[str, tuple[Conditions, dict[str, list[float]]]] = {}
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
            by_arch.setdefault(searched.to_string(encoding), []).append(_latency(row["latency_ms"], where))
    except csv.Error as err:
        raise DatasetError(f"{path}: line {reader.line_num}: {err}") from err
    if not groups:
        raise DatasetError(f"{path}: no rows below the header")
    return space, groups


def import_csv(session: Session, path: Path, device: str | None = None) -> Imported:
    """Import a latfarm CSV export for ``device`` (default: the file's stem); returns rows added and entries
    present (``rows.add_rows``, one entry per arch and conditions).

    All-or-nothing: any bad line raises ``DatasetError`` before a row is written.
    """
    path = Path(path)
    space, groups = read_csv(path)
    archs = [arch for _, by_arch in groups.values() for arch in by_arch]
    ids = ensure_archs(session, archs, space)
    target = ensure_device(session, device or path.stem, CSV)
    imported = Imported()
    for conditions, by_arch in groups.values():
        latencies = {ids[arch]: statistics.median(ms) for arch, ms in by_arch.items()}
        imported += add_rows(session, target, CSV, latencies, conditions)
    return imported
