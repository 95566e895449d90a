"""Latency datasets in and out of the store: HELP, LatBench and HW-NAS-Bench imports; CSV and LatBench exports.

Imported rows are ``source=imported`` with ``dataset`` set (``help-nb201``, ``latbench``, ``hw-nas-bench``), in
milliseconds; the dataset's figure is both ``latency_ms`` and ``median_ms``. Imports are idempotent: rows already
present for (device, arch, dataset) are skipped, and the ``uq_measurements_dataset`` constraint backs that up.
Missing devices are created, described from their names.

Device names: HELP and LatBench use the file name (``latency/titanx_32.pt`` -> ``titanx_32``, batch size 32 from
the ``_<n>`` suffix of a known GPU/phone family). HW-NAS-Bench metric ``<device>_latency`` becomes device
``<device>`` for CIFAR-10 and ``<device>-<dataset>`` for its other datasets (``edgegpu-cifar100``,
``edgegpu-ImageNet16-120``), since those networks differ in input size and classes.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import insert, literal_column, select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.core.config import Settings
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.models import Arch, Device, Measurement, Source, utcnow

HELP = "help-nb201"
LATBENCH = "latbench"
HWNASBENCH = "hw-nas-bench"
FORMATS = {"help": HELP, "latbench": LATBENCH, "hwnasbench": HWNASBENCH}
EXPORT_FORMATS = ("csv", "latbench")
HWNAS_CIFAR10 = "cifar10"

# name or family -> (hardware, runtime the dataset measured with)
HARDWARE: dict[str, tuple[str, str]] = {
    "1080ti": ("NVIDIA GeForce GTX 1080 Ti GPU", "pytorch"),
    "2080ti": ("NVIDIA GeForce RTX 2080 Ti GPU", "pytorch"),
    "titanx": ("NVIDIA GeForce GTX Titan X GPU", "pytorch"),
    "titanxp": ("NVIDIA Titan Xp GPU", "pytorch"),
    "titan_rtx": ("NVIDIA Titan RTX GPU", "pytorch"),
    "silver_4114": ("Intel Xeon Silver 4114 CPU", "pytorch"),
    "silver_4210r": ("Intel Xeon Silver 4210R CPU", "pytorch"),
    "gold_6240": ("Intel Xeon Gold 6240 CPU", "pytorch"),
    "pixel3": ("Google Pixel 3 phone CPU", "tflite"),
    "pixel2": ("Google Pixel 2 phone CPU", "tflite"),
    "essential_ph": ("Essential Phone PH-1 CPU", "tflite"),
    "samsung_a50": ("Samsung Galaxy A50 phone CPU", "tflite"),
    "samsung_s7": ("Samsung Galaxy S7 phone CPU", "tflite"),
    "raspi4": ("Raspberry Pi 4 CPU", "pytorch"),
    "edgegpu": ("NVIDIA Jetson TX2 edge GPU", "tensorrt"),
    "edgetpu": ("Google Edge TPU", "tflite"),
    "eyeriss": ("Eyeriss ASIC (simulated)", "simulator"),
    "fpga": ("FPGA (Xilinx ZC706, simulated)", "simulator"),
}
_BATCH_SUFFIX = re.compile(r"^(?P<family>.+)_(?P<batch>\d+)$")


class DatasetError(ValueError):
    """Bad dataset input or an unknown device; the message names the file, entry or device."""


def describe_device(name: str) -> dict:
    """Device columns from a dataset's device name: hardware, runtime and batch size (``_<n>`` suffix)."""
    base, batch = name, 1
    if (match := _BATCH_SUFFIX.match(name)) and match["family"] in HARDWARE and name not in HARDWARE:
        base, batch = match["family"], int(match["batch"])
    family = base.split("-")[0]  # HW-NAS-Bench: <device>-<dataset>
    hardware, runtime = HARDWARE.get(base) or HARDWARE.get(family) or (name, "unknown")
    return {"hardware": hardware, "runtime": runtime, "batch_size": batch}


def ensure_device(session: Session, name: str, dataset: str) -> Device:
    device = device_by_name(session, name)
    if device is None:
        device = Device(name=name, description=f"imported from {dataset}", **describe_device(name))
        session.add(device)
        session.flush()
    return device


def _add_rows(session: Session, device: Device, dataset: str, latencies_ms: Mapping[int, float]) -> int:
    """Insert ``{arch_id: ms}`` rows not yet stored for (device, dataset); returns how many were added.

    Core executemany with the per-import columns fixed in the statement: only arch_id and the figure (latency_ms,
    median_ms) vary per row.
    """
    present = set(
        session.scalars(
            select(Measurement.arch_id).where(Measurement.device_id == device.id, Measurement.dataset == dataset)
        )
    )
    rows = [(arch_id, ms) for arch_id, ms in latencies_ms.items() if arch_id not in present]
    fixed = {
        "device_id": device.id,
        "source": Source.imported.value,
        "dataset": dataset,
        "unstable": False,
        "protocol": "{}",
        "round_medians_ms": "[]",
        "provenance": "{}",
        "created_at": utcnow(),
    }
    if session.get_bind().dialect.name == "postgresql":
        _copy_rows(session, fixed, rows)
        return len(rows)
    statement = insert(Measurement.__table__).values(
        {
            k: literal_column(f"'{v}'") if k in ("protocol", "round_medians_ms", "provenance") else v
            for k, v in fixed.items()
        }
    )
    for start in range(0, len(rows), 10000):
        chunk = rows[start : start + 10000]
        session.execute(statement, [{"arch_id": a, "latency_ms": ms, "median_ms": ms} for a, ms in chunk])
    return len(rows)


def _copy_rows(session: Session, fixed: dict, rows: list[tuple[int, float]]) -> None:
    """PostgreSQL: COPY is several times faster than multi-row INSERTs for hundreds of thousands of rows."""
    columns = [*fixed, "arch_id", "latency_ms", "median_ms"]
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor.copy(f"COPY {Measurement.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        constant = tuple(fixed.values())
        for arch_id, ms in rows:
            copy.write_row((*constant, arch_id, ms, ms))


def _checked_ms(values: Sequence, where: str, scale: float = 1.0) -> list[float]:
    """Latencies as floats in ms, refusing non-numbers, negatives and non-finite values."""
    try:
        array = np.asarray(values, dtype=np.float64) * scale
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: latencies must be numbers ({err})") from err
    bad = np.flatnonzero(~(np.isfinite(array) & (array >= 0)))
    if bad.size:
        raise DatasetError(f"{where}: entry {bad[0]} is {array[bad[0]]!r}; latencies must be finite and >= 0")
    return array.tolist()


def _arch_ids_by_index(session: Session, indices: Iterable[int]) -> dict[int, int]:
    """Arch ids of cells by official NB201 index, creating missing arch rows."""
    wanted = set(indices)
    query = select(Arch.nb201_index, Arch.id).where(Arch.space == nb201.SPACE, Arch.nb201_index.is_not(None))
    ids = {index: id_ for index, id_ in session.execute(query) if index in wanted}
    missing = {nb201.to_string(nb201.from_official_index(i)): i for i in wanted - ids.keys()}
    if missing:
        ids.update({missing[a]: id_ for a, id_ in ensure_archs(session, missing).items()})
    return ids


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled
    )


def import_help(session: Session, path: Path, progress: bool = True) -> int:
    """Import a HELP release folder (``latency/<device>.pt``, ``str_arch2idx.pt``); returns rows added."""
    import torch

    path = Path(path)
    files = sorted((path / "latency").glob("*.pt"))
    if not (path / "str_arch2idx.pt").exists() or not files:
        raise DatasetError(f"{path}: not a HELP folder (needs str_arch2idx.pt and latency/<device>.pt)")
    str_arch2idx = torch.load(path / "str_arch2idx.pt", weights_only=True)
    table = nb201.official_ops_table()
    if len(str_arch2idx) != nb201.NUM_ARCHS or any(
        str_arch2idx.get(nb201.to_string(table[i])) != i for i in range(nb201.NUM_ARCHS)
    ):
        raise DatasetError(f"{path / 'str_arch2idx.pt'}: arch indices differ from the official NB201 ones")
    ids = _arch_ids_by_index(session, range(nb201.NUM_ARCHS))
    arch_ids = [ids[i] for i in range(nb201.NUM_ARCHS)]
    added = 0
    with _progress(progress) as bar:
        task = bar.add_task("HELP devices", total=len(files))
        for file in files:
            values = torch.load(file, weights_only=True)
            if len(values) != nb201.NUM_ARCHS:
                raise DatasetError(f"{file}: expected {nb201.NUM_ARCHS} latencies, found {len(values)}")
            device = ensure_device(session, file.stem, HELP)
            latencies = dict(zip(arch_ids, _checked_ms(values, str(file)), strict=True))
            added += _add_rows(session, device, HELP, latencies)
            bar.update(task, advance=1, description=f"HELP {file.stem}")
    return added


def import_latbench(session: Session, path: Path, device: str | None = None) -> int:
    """Import one LatBench pickle ``{6-op tuple: seconds (or a list of runs: their median)}`` for ``device``."""
    path = Path(path)
    data = _load_pickle(path)
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: expected a dict {{6-op tuple: seconds}}, found {type(data).__name__}")
    latencies_by_arch: dict[str, float] = {}
    for ops, seconds in data.items():
        try:
            arch = nb201.to_string(ops)
        except nb201.ArchError as err:
            raise DatasetError(f"{path}: key {ops!r}: {err}") from err
        runs = seconds if isinstance(seconds, Sequence) and not isinstance(seconds, str) else [seconds]
        latencies_by_arch[arch] = statistics.median(_checked_ms(runs, f"{path}[{ops!r}]", scale=1000.0))
    ids = ensure_archs(session, latencies_by_arch)
    target = ensure_device(session, device or path.stem, LATBENCH)
    return _add_rows(session, target, LATBENCH, {ids[a]: ms for a, ms in latencies_by_arch.items()})


def import_hwnasbench(session: Session, path: Path) -> int:
    """Import HW-NAS-Bench's pickle: every ``d['nasbench201'][dataset][<device>_latency][index]`` (ms)."""
    path = Path(path)
    data = _load_pickle(path)
    try:
        by_dataset = data["nasbench201"]
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path}: expected a dict with key 'nasbench201' (HW-NAS-Bench layout)") from err
    tables: dict[str, tuple[tuple[int, ...], list[float]]] = {}  # device -> (indices, ms)
    for dataset, metrics in by_dataset.items():
        for metric, values in metrics.items():
            if not metric.endswith("_latency"):
                continue
            name = metric.removesuffix("_latency")
            name = name if dataset == HWNAS_CIFAR10 else f"{name}-{dataset}"
            where = f"{path}: {dataset}/{metric}"
            items = list(values.items() if isinstance(values, Mapping) else enumerate(values))
            if not items:
                continue
            indices, ms = zip(*items, strict=True)
            indices = tuple(int(i) for i in indices)
            if bad := [i for i in indices if not 0 <= i < nb201.NUM_ARCHS]:
                raise DatasetError(f"{where}: index {bad[0]} outside 0..{nb201.NUM_ARCHS - 1}")
            tables[name] = (indices, _checked_ms(ms, where))
    arch_ids = _arch_ids_by_index(session, {i for indices, _ in tables.values() for i in indices})
    added = 0
    for name, (indices, ms) in tables.items():
        latencies = dict(zip((arch_ids[i] for i in indices), ms, strict=True))
        added += _add_rows(session, ensure_device(session, name, HWNASBENCH), HWNASBENCH, latencies)
    return added


def _load_pickle(path: Path):
    """Unpickle a dataset file (trusted input: pickles run code, so import only files you trust)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except (pickle.UnpicklingError, EOFError) as err:
        raise DatasetError(f"{path}: not a pickle file ({err})") from err


def _open_store(settings: Settings):
    """Engine and sessions on the settings' database, migrated to the current schema first."""
    from latfarm.services.store.db import make_engine, make_sessionmaker
    from latfarm.services.store.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    return engine, make_sessionmaker(engine)


def import_dataset(settings: Settings, path: Path, fmt: str = "help", device: str | None = None) -> dict:
    """``latfarm import``: migrate the store, import one dataset in one transaction, print and return a summary.

    Bad input exits with the ``DatasetError`` message (no traceback); library callers use ``import_help`` etc.
    """
    from latfarm.services.store.db import transaction

    if fmt not in FORMATS:
        raise SystemExit(f"error: unknown dataset format {fmt!r}; expected one of {sorted(FORMATS)}")
    engine, factory = _open_store(settings)
    start = time.perf_counter()
    try:
        with transaction(factory) as session:
            if fmt == "help":
                added = import_help(session, Path(path))
            elif fmt == "latbench":
                added = import_latbench(session, Path(path), device)
            else:
                added = import_hwnasbench(session, Path(path))
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from err
    finally:
        engine.dispose()
    seconds = time.perf_counter() - start
    print(f"imported {added} new measurements from {path} ({FORMATS[fmt]}) in {seconds:.1f} s")
    return {"format": fmt, "dataset": FORMATS[fmt], "rows_added": added, "seconds": seconds}


# --- export ------------------------------------------------------------------------------------------------
# latency_ms is the headline figure; statistic says how an agent computed it (empty for imported rows)
ROW_FIELDS = (
    "arch",
    "nb201_index",
    "ops",
    "latency_ms",
    "statistic",
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "p90_ms",
    "runs",
    "unstable",
    "source",
    "dataset",
    "runtime",
    "runtime_version",
    "provider",
    "threads",
    "agent_id",
    "job_id",
    "artifact_sha256",
    "created_at",
)


def device_rows(session: Session, device_name: str) -> list[dict]:
    """Every measurement of a device (one row each, by NB201 index), with the arch and its op vector."""
    device = device_by_name(session, device_name)
    if device is None:
        known = session.scalars(select(Device.name).order_by(Device.name).limit(21)).all()
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise DatasetError(f"unknown device {device_name!r}; known devices: {listed or 'none'}")
    derived = ("arch", "nb201_index", "ops", "statistic")
    columns = [getattr(Measurement, name) for name in ROW_FIELDS if name not in derived]
    query = (
        select(Arch.arch, Arch.nb201_index, Measurement.protocol, *columns)
        .join(Arch, Measurement.arch_id == Arch.id)
        .where(Measurement.device_id == device.id)
        .order_by(Arch.nb201_index, Measurement.id)
    )
    rows = []
    for row in session.execute(query).mappings():
        row = dict(row)
        row.update(
            ops=nb201.parse(row["arch"]),
            statistic=(row["protocol"] or {}).get("statistic", ""),
            source=Source(row["source"]).value,
            created_at=row["created_at"].isoformat() if row["created_at"] else None,
        )
        rows.append({name: row[name] for name in ROW_FIELDS})
    return rows


def to_csv(rows: Iterable[dict]) -> str:
    """CSV with a header of ``ROW_FIELDS``; ``ops`` is written as its 6 digits (LatBench op ids)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "ops": "".join(str(o) for o in row["ops"])})
    return buf.getvalue()


def to_latbench_pickle(rows: Iterable[dict]) -> bytes:
    """LatBench layout ``{6-op tuple: seconds}``: per arch, the median of its rows' latencies (``latency_ms``)."""
    by_ops: dict[tuple[int, ...], list[float]] = {}
    for row in rows:
        by_ops.setdefault(tuple(row["ops"]), []).append(row["latency_ms"])
    return pickle.dumps({ops: statistics.median(ms) / 1000.0 for ops, ms in by_ops.items()}, protocol=4)


def export_dataset(settings: Settings, device: str, fmt: str, out: Path) -> None:
    """``latfarm export data``: write a device's measurements as CSV or a LatBench pickle (errors exit)."""
    if fmt not in EXPORT_FORMATS:
        raise SystemExit(f"error: unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}")
    engine, factory = _open_store(settings)
    try:
        with factory() as session:
            rows = device_rows(session, device)
    except DatasetError as err:
        raise SystemExit(f"error: {err}") from err
    finally:
        engine.dispose()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        out.write_text(to_csv(rows))
    else:
        out.write_bytes(to_latbench_pickle(rows))
    print(f"wrote {len(rows)} measurements of {device} to {out}")
