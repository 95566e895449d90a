"""HELP importer: a HELP release folder of one search space, one device per ``latency/<device>.pt`` file.

NB201 folders hold ``str_arch2idx.pt`` (official indices); other spaces' folders hold their own arch list, read by
the space (``SearchSpace.read_reference``: FBNet's ``arch.pt`` / ``metainfo.pt``), and each latency list follows it
by position. HELP measured the reference network at the space's default input variant (NB201: CIFAR-10; FBNet:
CIFAR-100), at the batch size its device names carry (``titanx_32``: 32), in fp32 unless the name says otherwise
(``hardware.precision_of``). Rows are dataset ``help-<space>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from latfarm.common.pickles import RefusedGlobal
from latfarm.predictor import nb201
from latfarm.predictor.help_data import read_latency_file, torch_file
from latfarm.predictor.spaces import SPACES, ArchError, SearchSpace, UnknownSpace, get_space
from latfarm.services.core.progress import count_bar
from latfarm.services.datasets.hardware import describe_device
from latfarm.services.datasets.rows import (
    DatasetError,
    Imported,
    add_rows,
    arch_ids_by_index,
    ensure_device,
    take_turn,
)
from latfarm.services.domain.conditions import device_conditions
from latfarm.services.store.crud import ensure_archs

HELP = "help-nb201"


def dataset_of(space: str) -> str:
    """The dataset name of a space's HELP rows: ``help-nb201``, ``help-fbnet``."""
    return f"help-{space}"


def import_help(
    session: Session,
    path: Path,
    progress: bool = True,
    space: str = nb201.SPACE,
    devices: Sequence[str] | None = None,
) -> Imported:
    """Import a HELP release folder of ``space`` (all its ``latency/<device>.pt``, or only ``devices``); returns
    rows added and entries present (``rows.add_rows``).

    Files are read and checked by ``predictor.help_data.read_latency_file`` (the loader ``eval transfer`` uses);
    NaN entries (not measured) are skipped. A bad file (one with no measured entry included), an unknown device or
    space, or another space's folder raises ``DatasetError`` naming it, and nothing is stored.
    """
    path = Path(path)
    try:
        searched = get_space(space)
    except UnknownSpace as err:
        raise DatasetError(f"--space: {err}") from err
    files = latency_files(path, devices)
    take_turn(session)
    arch_ids = _nb201_arch_ids(session, path) if space == nb201.SPACE else _reference_arch_ids(session, path, searched)
    dataset = dataset_of(space)
    imported = Imported()
    with count_bar(enabled=progress) as bar:
        task = bar.add_task(f"HELP {space} devices", total=len(files))
        for file in files:
            try:
                values = read_latency_file(file, len(arch_ids))
            except ValueError as err:
                size = "" if isinstance(err.__cause__, RefusedGlobal) else f" ({space} data has {len(arch_ids)} archs)"
                raise DatasetError(f"{err}{size}") from err
            device = ensure_device(session, file.stem, dataset)
            measured = np.flatnonzero(~np.isnan(values))  # NaN: not measured, no row
            if measured.size == 0:
                raise DatasetError(f"{file}: no measured entries (all {len(values)} are NaN)")
            latencies = {arch_ids[i]: float(values[i]) for i in measured}
            described = describe_device(file.stem)
            conditions = device_conditions(described["batch_size"], described["precision"]).for_space(space)
            imported += add_rows(session, device, dataset, latencies, conditions)
            bar.update(task, advance=1, description=f"HELP {space} {file.stem}")
    return imported


def latency_files(path: Path, devices: Sequence[str] | None = None) -> list[Path]:
    """The HELP folder's ``latency/<device>.pt`` files (of ``devices`` when given); ``DatasetError`` for a missing
    folder, a file, a folder without them or a device it lacks."""
    if not path.exists():
        raise DatasetError(f"{path}: no such folder")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file; --format help reads a HELP folder (latency/<device>.pt)")
    files = sorted((path / "latency").glob("*.pt"))
    if not files:
        raise DatasetError(f"{path}: not a HELP folder (needs latency/<device>.pt)")
    if not devices:
        return files
    by_name = {file.stem: file for file in files}
    unknown = [name for name in devices if name not in by_name]
    if unknown:
        raise DatasetError(f"--device: no latency/{unknown[0]}.pt in {path}; devices: {', '.join(sorted(by_name))}")
    return [by_name[name] for name in dict.fromkeys(devices)]


def folder_space(path: Path) -> str | None:
    """The search space whose HELP folder ``path`` is: NB201 when it holds ``str_arch2idx.pt``, else the registered
    space that reads its arch list (``SearchSpace.read_reference``); None when none does."""
    if (path / "str_arch2idx.pt").exists():
        return nb201.SPACE
    for other in SPACES.values():
        if other.name == nb201.SPACE:
            continue
        try:
            other.read_reference(path)
        except (FileNotFoundError, ArchError, ValueError):
            continue
        return other.name
    return None


def _other_space(path: Path, space: str) -> str:
    """'; it holds <other> data: use --space <other>' when the folder is another space's (``folder_space``), else
    ''."""
    found = folder_space(path)
    if found is None or found == space:
        return ""
    held = f"{found} data (str_arch2idx.pt)" if found == nb201.SPACE else f"{found} data"
    return f"; it holds {held}: use --space {found}"


def _reference_arch_ids(session: Session, path: Path, space: SearchSpace) -> list[int]:
    """Arch ids of the folder's archs by position (rows created). A row's ``reference_index`` is the arch's position in
    the space's reference set when it has one (FBNet: HELP's release, the same list), else in the folder. A missing,
    unreadable or malformed arch list (``SearchSpace.read_reference`` names it) raises ``DatasetError``."""
    try:
        reference = space.read_reference(path)
    except FileNotFoundError as err:
        raise DatasetError(f"{err}{_other_space(path, space.name)}") from err
    except (ArchError, ValueError) as err:
        raise DatasetError(f"{path}: {err}") from err
    strings = [space.to_string(arch) for arch in reference]
    positions: dict[str, int] = {}
    if space.reference_set() is None:
        for position, arch in enumerate(strings):
            positions.setdefault(arch, position)
    ids = ensure_archs(session, strings, space.name, positions)
    return [ids[arch] for arch in strings]


def _nb201_arch_ids(session: Session, path: Path) -> list[int]:
    """Arch ids by official NB201 index, once ``str_arch2idx.pt`` is checked against the official indices."""
    if not (path / "str_arch2idx.pt").exists():
        raise DatasetError(f"{path}: not a HELP NB201 folder (needs str_arch2idx.pt){_other_space(path, nb201.SPACE)}")
    try:
        str_arch2idx = torch_file(path / "str_arch2idx.pt")
    except ValueError as err:
        raise DatasetError(str(err)) from err
    table = nb201.official_ops_table()
    if (
        not isinstance(str_arch2idx, dict)
        or len(str_arch2idx) != nb201.NUM_ARCHS
        or any(str_arch2idx.get(nb201.to_string(table[i])) != i for i in range(nb201.NUM_ARCHS))
    ):
        raise DatasetError(f"{path / 'str_arch2idx.pt'}: arch indices differ from the official NB201 ones")
    ids = arch_ids_by_index(session, range(nb201.NUM_ARCHS))
    return [ids[i] for i in range(nb201.NUM_ARCHS)]
