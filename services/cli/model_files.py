"""``latfarm export model``: archs of a search space, given as strings or reference positions (NB201: official
indices), exported into a folder."""

from __future__ import annotations

from pathlib import Path

from latfarm.services.cli.measure_results import arch_values
from latfarm.services.cli.options import checked_archs
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import check_format


def export_cli(archs: list[str], fmt: str, out: Path, conditions: Conditions) -> None:
    """Export each arch (of ``conditions.space``; digits: a reference position) into ``out`` under ``conditions``
    and print its sha256 and path. A bad arch is a usage error of ARCHS (``options.checked_archs``) before anything
    is exported; a format whose exporter is not installed raises
    ``ExportUnavailable``, a precision the format cannot carry ``Unsupported``."""
    from rich.console import Console

    from latfarm.services.core.progress import count_bar

    console = Console()
    strings = checked_archs(arch_values(archs), conditions.space)
    check_format(fmt)
    store = ArtifactStore(out)
    results = []
    with count_bar(transient=True) as bar:  # on stderr: stdout carries the results
        task = bar.add_task(f"exporting {fmt}", total=len(strings))
        for arch in strings:
            results.append((arch, *store.export_file(arch, fmt, conditions)))
            bar.advance(task)
    for arch, sha, path in results:
        console.print(f"{sha}  {path}  {arch}", highlight=False, soft_wrap=True)
