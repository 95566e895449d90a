"""What every importer shares: the error it raises, checked latencies, arch and device rows, and the bulk insert.

Imported rows are ``source=imported`` with ``dataset`` set, in milliseconds; the dataset's figure is both
``latency_ms`` and ``median_ms`` (unless the file has its own median: a CSV line's); every row records the
conditions the dataset measured under (``conditions`` and ``conditions_key``: the reference graph, the dataset
device's batch size and precision). An import adds no row for an arch the device already has a row of under the
same conditions (``add_rows``); missing devices are created, described from their names
(``hardware.describe_device``). A single-device file (LatBench, CSV) belongs to one device (``claim_file``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, insert, literal_column, select, text
from sqlalchemy.orm import Session

from latfarm.common.pickles import RefusedGlobal, load_plain
from latfarm.predictor import nb201
from latfarm.predictor.latencies import checked_latencies
from latfarm.services.core.clock import utcnow
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.datasets.hardware import describe_device
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.names import checked_device_name
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.models import Arch, Device, ImportedFile, Measurement, Source


class DatasetError(InvalidArgument):
    """Bad dataset input or an unknown device; the message names the file, entry or device."""


@dataclass(frozen=True)
class Imported:
    """What an import did: rows ``added``, and entries skipped as ``present`` (``add_rows``' rule)."""

    added: int = 0
    present: int = 0

    def __add__(self, other: Imported) -> Imported:
        return Imported(self.added + other.added, self.present + other.present)


def ensure_device(session: Session, name: str, dataset: str) -> Device:
    """The device called ``name``, created (described from its name) if the store lacks it; a name against the
    device-name rule (``domain.names``) raises ``DatasetError``."""
    try:
        checked_device_name(name)
    except InvalidArgument as err:
        raise DatasetError(f"{err.message} (importing {dataset})") from err
    device = device_by_name(session, name)
    if device is None:
        device = Device(name=name, description=f"imported from {dataset}", **describe_device(name))
        session.add(device)
        session.flush()
    return device


JSON_COLUMNS = ("protocol", "round_medians_ms", "provenance", "conditions")  # written as JSON text, not bound values
DETAIL_DEFAULTS = {"unstable": False, "protocol": {}, "provenance": {}}  # a detail column where a row gives none


def file_provenance(path: Path) -> dict[str, str]:
    """``{"file": its name, "sha256": its content's digest}``: what a single-device file's rows keep in their
    ``provenance`` (where each came from), and by which ``claim_file`` knows the file again."""
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def claim_file(
    session: Session, path: Path, provenance: Mapping[str, str], device: Device, fmt: str, space: str, copy: bool
) -> None:
    """The rule of single-device files (LatBench, CSV): one file's figures belong to one device. A file whose content
    (``file_provenance``'s digest) was imported as another device raises ``DatasetError`` naming that device, unless
    ``copy`` asks for its figures under ``device`` too; under the device it was imported as, it imports again
    (``add_rows`` adds what that device lacks). Otherwise records the file as imported as ``device``
    (``ImportedFile``, in the import's transaction: also where it adds no row), once per content and device.

    Reads the records by their (sha256, device) index, whatever the number of rows; in the import's turn
    (``take_turn``), so an import of the same file beside it sees this one's record."""
    take_turn(session)
    held = session.scalars(
        select(Device.name)
        .join(ImportedFile, ImportedFile.device_id == Device.id)
        .where(ImportedFile.sha256 == provenance["sha256"])
        .order_by(Device.name)
    ).all()
    if device.name in held:
        return
    if held and not copy:
        names = " and ".join(repr(name) for name in held)
        first = held[0]
        raise DatasetError(
            f"{path}: imported before as device {names}; one file's figures belong to one device: import it as "
            f"{first!r} again (--device {first}), or pass --copy to import it as {device.name!r} too",
            field="device",
        )
    session.add(ImportedFile(sha256=provenance["sha256"], device_id=device.id, format=fmt, space=space, file=path.name))
    session.flush()


def take_turn(session: Session) -> None:
    """Imports take turns, each from before its first write (archs, devices, records, rows) to its end, so one that
    runs beside another reads what the other wrote rather than colliding with it: on PostgreSQL by a lock held to the
    end of the transaction (taken again, it is held already), on SQLite as every write transaction (``store.db``:
    ``BEGIN IMMEDIATE``)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("select pg_advisory_xact_lock(hashtext('latfarm-import'))"))


def add_rows(
    session: Session,
    device: Device,
    dataset: str,
    latencies_ms: Mapping[int, float],
    conditions: Conditions,
    details: Mapping[int, Mapping[str, Any]] | None = None,
) -> Imported:
    """Insert ``{arch_id: ms}`` rows measured under ``conditions``, except for the archs the device already has a row
    of under these conditions; returns how many were added and how many skipped as present.

    The one rule of every import: a device's figure of an arch under given conditions comes in once, whatever file,
    format or dataset name brings it (the same file again, a LatBench export of the device imported back, HELP and
    HW-NAS-Bench both holding a device). Any row counts, from an agent or an import, quarantined too: an import
    never adds beside what the device has, and never changes or removes a row. ``details`` (``{arch_id: {column:
    value}}``) fills more of the rows' columns where the dataset has them (LatBench's ``runs``; a CSV's figures,
    setup, ``protocol`` and ``provenance``); ``median_ms`` is the figure unless given.

    Core executemany with the per-import columns fixed in the statement: only arch_id, the figure and the details
    vary per row; in the import's turn (``take_turn``), so it reads what an import beside it added.
    """
    take_turn(session)
    postgresql = session.get_bind().dialect.name == "postgresql"
    present = set(
        session.scalars(
            select(Measurement.arch_id)
            .where(Measurement.device_id == device.id, Measurement.conditions_key == conditions.key)
            .distinct()
        )
    )
    details = details or {}
    varying = ["arch_id", "latency_ms", "median_ms", *sorted({c for d in details.values() for c in d} - {"median_ms"})]
    rows = [
        {
            "arch_id": arch_id,
            "latency_ms": ms,
            "median_ms": ms,
            **{column: DETAIL_DEFAULTS.get(column) for column in varying[3:]},
            **details.get(arch_id, {}),
        }
        for arch_id, ms in latencies_ms.items()
        if arch_id not in present
    ]
    fixed = {
        "device_id": device.id,
        "source": Source.imported.value,
        "dataset": dataset,
        "unstable": False,
        "quarantined": False,
        "protocol": "{}",
        "round_medians_ms": "[]",
        "provenance": "{}",
        "conditions": json.dumps(conditions.to_dict()),
        "conditions_key": conditions.key,
        "created_at": utcnow(),
    }
    fixed = {column: value for column, value in fixed.items() if column not in varying}
    result = Imported(len(rows), len(latencies_ms) - len(rows))
    if postgresql:
        _copy_rows(session, fixed, varying, rows)
        return result
    statement = insert(cast(Table, Measurement.__table__)).values(
        {k: literal_column(f"'{v}'") if k in JSON_COLUMNS else v for k, v in fixed.items()}
    )
    for start in range(0, len(rows), 10000):
        session.execute(statement, rows[start : start + 10000])
    return result


def _copy_rows(session: Session, fixed: dict, varying: list[str], rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY is several times faster than multi-row INSERTs for hundreds of thousands of rows."""
    columns = [*fixed, *varying]
    driver_connection = session.connection().connection.driver_connection
    assert driver_connection is not None, "a checked-out connection has its driver connection"
    cursor = driver_connection.cursor()
    with cursor.copy(f"COPY {Measurement.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        constant = tuple(fixed.values())
        for row in rows:
            copy.write_row((*constant, *(json.dumps(row[c]) if c in JSON_COLUMNS else row[c] for c in varying)))


def is_number(value: object) -> bool:
    """A real number as a dataset may hold one: a Python or numpy int or float, never a bool, text or bytes."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def first_non_number(values: object) -> tuple[int, object] | None:
    """(position, entry) of the first entry of ``values`` (a number or a sequence / array of them, nested or not;
    positions count the flattened entries) that is neither a number (``is_number``) nor ``None`` (a gap: NaN to
    the latency rule); ``None`` when all are."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return None
    try:
        entries = np.asarray(values, dtype=object).reshape(-1)
    except ValueError:  # ragged beyond what an object array holds
        return 0, values
    for position, entry in enumerate(entries):
        if entry is not None and not is_number(entry):
            return position, entry
    return None


def checked_ms(values: object, where: str, scale: float = 1.0) -> list[float]:
    """Latencies as floats in ms (``values``, one number or a sequence, times ``scale``), checked by the predictor's
    rule (``predictor.latencies``: finite ms within its bounds; zero, negatives, NaN and inf refused), after each
    entry is checked to be a number (``first_non_number``: bools and numbers as text are refused too).

    Raises ``DatasetError`` naming ``where`` and the first bad entry.
    """
    if (bad := first_non_number(values)) is not None:
        raise DatasetError(f"{where}: entry {bad[0]} is {bad[1]!r:.40}; latencies must be numbers")
    try:
        return (checked_latencies(values, where, to_ms=scale) * scale).tolist()
    except ValueError as err:
        raise DatasetError(str(err)) from err


def arch_ids_by_index(session: Session, indices: Iterable[int]) -> dict[int, int]:
    """Arch ids of cells by official NB201 index, creating missing arch rows."""
    wanted = set(indices)
    query = select(Arch.nb201_index, Arch.id).where(Arch.space == nb201.SPACE, Arch.nb201_index.is_not(None))
    ids = {index: id_ for index, id_ in session.execute(query) if index in wanted}
    missing = {nb201.to_string(nb201.from_official_index(i)): i for i in wanted - ids.keys()}
    if missing:
        ids.update({missing[a]: id_ for a, id_ in ensure_archs(session, missing).items()})
    return ids


def load_pickle(path: Path, fmt: str) -> Any:
    """Unpickle a dataset file of format ``fmt`` holding plain data only (``common.pickles.load_plain``: a file
    naming any other global is refused, and nothing of it runs); ``DatasetError`` for a missing file, a folder, a
    refused global, or a file that is no pickle (a torch.save file, as HELP's, named as such)."""
    if path.is_dir():
        raise DatasetError(
            f"{path} is a folder; --format {fmt} reads a pickle file; for a HELP folder use --format help"
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with path.open("rb") as fh:
            return load_plain(fh)
    except RefusedGlobal as err:
        raise DatasetError(f"{path}: {err}") from err
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as err:
        if zipfile.is_zipfile(path):  # torch.save's format, as HELP's latency/<device>.pt
            raise DatasetError(
                f"{path}: a torch.save file, not the pickle --format {fmt} reads; a HELP folder's file "
                "(latency/<device>.pt): import the folder with --format help"
            ) from err
        raise DatasetError(f"{path}: not a pickle file ({' '.join(str(err).split())})") from err
