"""``latfarm export model``: NB201 archs, given as strings or official indices, exported into a folder."""

from __future__ import annotations

from pathlib import Path

from latfarm.predictor import nb201
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import check_format


def parse_arch_arg(value: str) -> str:
    """An arch string, or an official NB201 index given as digits, as a canonical arch string."""
    value = value.strip()
    if value.isdigit():
        return nb201.to_string(nb201.from_official_index(int(value)))
    return nb201.canonical(value)


def export_cli(archs: list[str], fmt: str, out: Path, conditions: Conditions) -> None:
    """Export each arch into ``out`` under ``conditions`` and print its sha256 and path. Bad input raises
    ``InvalidArgument`` before anything is exported; a format whose exporter is not installed raises
    ``ExportUnavailable``, a precision the format cannot carry ``Unsupported``."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    try:
        canonical_archs = [parse_arch_arg(a) for a in archs]
    except nb201.ArchError as err:
        raise InvalidArgument(str(err), field="archs") from err
    check_format(fmt)
    store = ArtifactStore(out)
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"exporting {fmt}", total=len(canonical_archs))
        for arch in canonical_archs:
            results.append((arch, *store.export_file(arch, fmt, conditions)))
            progress.advance(task)
    for arch, sha, path in results:
        console.print(f"{sha}  {path}  {arch}", highlight=False, soft_wrap=True)
