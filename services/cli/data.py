"""``latfarm import``, ``export model`` and ``export data``: datasets into and out of the store, models to files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from latfarm.services.cli.errors import exit_on_error, interrupted, settings_from_env
from latfarm.services.cli.options import (
    ARCHS_HELP,
    MODEL_FORMATS_MODULE,
    DataDir,
    DbUrl,
    DeviceName,
    ExportFormat,
    ExportOut,
    ExportSpace,
    check_graph,
    condition_option,
    dataset_path,
    device_names,
    one_of,
    precision_option,
    space_option,
)
from latfarm.services.cli.output import exported
from latfarm.services.cli.remote import FLAGS, field_message

if TYPE_CHECKING:
    from latfarm.services.core.config import Settings


VARIANT = "the space's variant"  # --resolution and --classes not given: the space's default input variant


def import_dataset(
    settings: Settings,
    path: Path,
    fmt: str = "help",
    device: str | None = None,
    space: str | None = None,
    devices: list[str] | None = None,
    copy: bool = False,
) -> dict:
    """Migrate the store, import one dataset in one transaction, print and return a summary (what was added, and
    what was skipped as already present); bad input exits, and so does Ctrl-C (status 130), with nothing
    imported."""
    from latfarm.services.cli.database import reachable_database
    from latfarm.services.datasets import import_into_store

    try:
        with exit_on_error("latfarm import"), reachable_database("latfarm import", settings.database_url):
            summary = import_into_store(
                settings, path, fmt=fmt, device=device, space=space, devices=devices or (), copy=copy
            )
    except KeyboardInterrupt:
        raise interrupted(f"latfarm import: interrupted; nothing was imported from {path}") from None
    added, dataset, seconds = summary["rows_added"], summary["dataset"], summary["seconds"]
    present = summary["already_present"]
    skipped = f"; {present} already present (the device has a row of the arch under the same conditions)"
    print(f"imported {added} new measurements from {path} ({dataset}) in {seconds:.1f} s{skipped if present else ''}")
    return summary


def export_dataset(settings: Settings, device: str, fmt: str, out: Path, space: str = "nb201") -> None:
    """Write a device's measurements as CSV or a LatBench pickle and say how many from which database; bad input
    or a database that does not exist exits (a read never creates one), the latter naming the REST command."""
    from latfarm.services.cli.database import existing_database, reachable_database
    from latfarm.services.datasets import export_from_store

    remote = f"away from the server: latfarm export device {device} --format {fmt} --space {space} --out {out}"
    with (
        exit_on_error("latfarm export data", context=remote),
        reachable_database("latfarm export data", settings.database_url),
    ):
        database = existing_database(settings)
    with (
        exit_on_error("latfarm export data", context=f"database {database}"),
        reachable_database("latfarm export data", settings.database_url),
    ):
        written = export_from_store(settings, device, fmt, out, space=space)
    print(f"wrote {exported(written, fmt)} of {device} ({space}) from {database} to {out}")


def _existing(path: Path) -> Path:
    """``import``'s PATH: a file or folder that exists, else a usage error (what it holds is the importer's to
    say)."""
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such file or folder")
    return path


def import_(
    path: Path = typer.Argument(..., callback=_existing, help="Dataset folder or file."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        callback=one_of("latfarm.services.datasets", "FORMATS"),
        show_default="csv for a file named *.csv, else help",
        help="help | latbench | hwnasbench | csv",
    ),
    device: list[str] = typer.Option(
        None,
        "--device",
        callback=device_names,
        help="LatBench, CSV: the file's device name (default: the file's stem). HELP: import only this device "
        "(repeatable).",
    ),
    space: str | None = space_option(
        "Search space of a HELP folder or a LatBench pickle (a CSV names its own: another is refused)",
        default=None,
        show_default="nb201; a CSV's own",
    ),
    copy: bool = typer.Option(
        False,
        "--copy",
        help="LatBench, CSV: import a file imported as another device before under this one too (a copy of its "
        "figures; without it such a file is refused).",
    ),
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Import a latency dataset into the store (idempotent: a figure the device has under the same conditions is
    skipped)."""
    from latfarm.services.core.config import Settings
    from latfarm.services.datasets import DatasetError
    from latfarm.services.datasets.formats import check_options

    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "help")
    dataset_path(path, fmt, "'PATH'")
    if fmt == "csv" and space is not None:
        _check_csv_space(path, space)
    try:
        check_options(fmt, space=space, copy=copy)
    except DatasetError as err:
        flag, _, message = err.message.partition(": ")
        raise typer.BadParameter(message, param_hint=f"'{flag}'") from err
    settings = settings_from_env(Settings, "latfarm import", db_url=db, data_dir=data_dir)
    if fmt in ("latbench", "csv"):
        if len(device or []) > 1:
            raise typer.BadParameter(f"a {fmt} file has one device", param_hint="--device")
        import_dataset(settings, path, fmt=fmt, device=device[0] if device else None, space=space, copy=copy)
        return
    import_dataset(settings, path, fmt=fmt, space=space, devices=device)


def _check_csv_space(path: Path, space: str) -> None:
    """A ``--space`` that contradicts the CSV's own (``csvrows.checked_space``) is a usage error (exit 2); a file
    whose header names no space is the import's to refuse."""
    from latfarm.services.datasets import DatasetError
    from latfarm.services.datasets.csvrows import checked_space, space_of

    try:
        space_of(path)
    except DatasetError:
        return
    try:
        checked_space(path, space)
    except DatasetError as err:
        raise typer.BadParameter(err.message.removeprefix(f"--space {space}: "), param_hint="'--space'") from err


def _model_folder(out: Path) -> Path:
    """``export model --out``: a folder, or one that can be made in the nearest folder above it that exists; a usage
    error (exit 2) before anything is exported otherwise."""
    existing = next(path for path in (out.absolute(), *out.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise typer.BadParameter(f"{existing} is a file; give a folder (nothing was exported)")
    if not os.access(existing, os.W_OK):
        raise typer.BadParameter(f"{existing}: not writable (nothing was exported)")
    return out


def export_model(
    archs: list[str] = typer.Argument(..., help=ARCHS_HELP),
    space: str = space_option("Search space of the archs"),
    fmt: str = typer.Option("onnx", "--format", callback=one_of(MODEL_FORMATS_MODULE, "FORMATS"), help="onnx | tflite"),
    out: Path = typer.Option(
        Path("artifacts"), "--out", callback=_model_folder, help="Output folder (content-addressed cache)."
    ),
    resolution: int = condition_option("resolution", "Input height and width, px", show_default=VARIANT),
    classes: int = condition_option("classes", "Output classes of the network's head", show_default=VARIANT),
    batch_size: int = condition_option("batch_size", "Images per inference (the input's first dimension)", 1),
    precision: str = precision_option(" (int8: ONNX only).", "fp32"),
    graph: str = typer.Option(
        "reference",
        "--graph",
        help="One of the space's graphs: reference (the benchmark's network) | pruned (NB201: none ops removed).",
    ),
) -> None:
    """Export networks of a search space to ONNX or TFLite under the given measurement conditions (resolution and
    classes: one of the space's input variants)."""
    from latfarm.services.cli.model_files import export_cli
    from latfarm.services.core.errors import InvalidArgument
    from latfarm.services.domain.conditions import Conditions

    check_graph(space, graph)
    fields = {"resolution": resolution, "classes": classes, "batch_size": batch_size}
    try:  # a value the space does not take (another space's input variant): a usage error naming the flag
        conditions = Conditions().for_space(space).merged({**fields, "precision": precision, "graph": graph})
    except InvalidArgument as err:
        field = err.field or ""
        raise typer.BadParameter(field_message(err), param_hint=f"'{FLAGS.get(field, field)}'") from err
    with exit_on_error("latfarm export model"):
        export_cli(archs, fmt=fmt, out=out, conditions=conditions)


def export_data(
    device: str = DeviceName,
    fmt: str = ExportFormat,
    out: Path = ExportOut,
    space: str = ExportSpace,
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Export a device's measurements of one search space as CSV or a LatBench pickle."""
    from latfarm.services.core.config import Settings

    settings = settings_from_env(Settings, "latfarm export data", db_url=db, data_dir=data_dir)
    export_dataset(settings, device, fmt=fmt, out=out, space=space)
