"""HELP importer: a HELP release folder (``latency/<device>.pt``, ``str_arch2idx.pt``), one device per file.

HELP measured the reference NB201 network in fp32 at the batch size its device names carry (``titanx_32``: 32).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.datasets.hardware import describe_device
from latfarm.services.datasets.rows import DatasetError, add_rows, arch_ids_by_index, checked_ms, ensure_device
from latfarm.services.domain.conditions import device_conditions

HELP = "help-nb201"


def _progress(enabled: bool):
    """A rich progress bar (count, elapsed time); ``enabled=False`` shows nothing."""
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
    ids = arch_ids_by_index(session, range(nb201.NUM_ARCHS))
    arch_ids = [ids[i] for i in range(nb201.NUM_ARCHS)]
    added = 0
    with _progress(progress) as bar:
        task = bar.add_task("HELP devices", total=len(files))
        for file in files:
            values = torch.load(file, weights_only=True)
            if len(values) != nb201.NUM_ARCHS:
                raise DatasetError(f"{file}: expected {nb201.NUM_ARCHS} latencies, found {len(values)}")
            device = ensure_device(session, file.stem, HELP)
            latencies = dict(zip(arch_ids, checked_ms(values, str(file)), strict=True))
            conditions = device_conditions(describe_device(file.stem)["batch_size"], "fp32")
            added += add_rows(session, device, HELP, latencies, conditions)
            bar.update(task, advance=1, description=f"HELP {file.stem}")
    return added
