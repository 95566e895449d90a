"""HELP importer: a HELP release folder (``latency/<device>.pt``, ``str_arch2idx.pt``), one device per file.

HELP measured the reference NB201 network at the batch size its device names carry (``titanx_32``: 32), in fp32
unless the name says otherwise (``hardware.precision_of``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.help_data import read_latency_file
from latfarm.services.datasets.hardware import describe_device
from latfarm.services.datasets.rows import DatasetError, add_rows, arch_ids_by_index, ensure_device
from latfarm.services.domain.conditions import device_conditions

HELP = "help-nb201"


def _progress(enabled: bool):
    """A rich progress bar (count, elapsed time); ``enabled=False`` shows nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled
    )


def import_help(session: Session, path: Path, progress: bool = True) -> int:
    """Import a HELP release folder (``latency/<device>.pt``, ``str_arch2idx.pt``); returns rows added.

    Files are read and checked by ``predictor.help_data.read_latency_file`` (the loader ``eval transfer`` uses);
    NaN entries (not measured) are skipped. A bad file raises ``DatasetError`` and nothing is stored.
    """
    import torch

    path = Path(path)
    files = sorted((path / "latency").glob("*.pt"))
    if not (path / "str_arch2idx.pt").exists() or not files:
        raise DatasetError(f"{path}: not a HELP folder (needs str_arch2idx.pt and latency/<device>.pt)")
    try:
        str_arch2idx = torch.load(path / "str_arch2idx.pt", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not its format
        raise DatasetError(f"{path / 'str_arch2idx.pt'}: not a torch.save file ({type(err).__name__})") from err
    table = nb201.official_ops_table()
    if (
        not isinstance(str_arch2idx, dict)
        or len(str_arch2idx) != nb201.NUM_ARCHS
        or any(str_arch2idx.get(nb201.to_string(table[i])) != i for i in range(nb201.NUM_ARCHS))
    ):
        raise DatasetError(f"{path / 'str_arch2idx.pt'}: arch indices differ from the official NB201 ones")
    ids = arch_ids_by_index(session, range(nb201.NUM_ARCHS))
    arch_ids = [ids[i] for i in range(nb201.NUM_ARCHS)]
    added = 0
    with _progress(progress) as bar:
        task = bar.add_task("HELP devices", total=len(files))
        for file in files:
            try:
                values = read_latency_file(file)
            except ValueError as err:
                raise DatasetError(str(err)) from err
            device = ensure_device(session, file.stem, HELP)
            measured = np.flatnonzero(~np.isnan(values))  # NaN: not measured, no row
            latencies = {arch_ids[i]: float(values[i]) for i in measured}
            described = describe_device(file.stem)
            conditions = device_conditions(described["batch_size"], described["precision"])
            added += add_rows(session, device, HELP, latencies, conditions)
            bar.update(task, advance=1, description=f"HELP {file.stem}")
    return added
