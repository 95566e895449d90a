"""``latfarm import``, ``export model`` and ``export data``: datasets into and out of the store, models to files."""

from __future__ import annotations

from pathlib import Path

import typer

from latfarm.services.cli.options import DataDir, DbUrl


def import_(
    path: Path = typer.Argument(..., help="Dataset folder or file."),
    fmt: str = typer.Option("help", "--format", help="help | latbench | hwnasbench"),
    device: str = typer.Option(None, "--device", help="Device name (LatBench: one file per device)."),
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Import a latency dataset into the store (idempotent)."""
    from latfarm.services.core.config import Settings
    from latfarm.services.datasets import import_dataset

    import_dataset(Settings.from_env(db_url=db, data_dir=data_dir), path, fmt=fmt, device=device)


def export_model(
    archs: list[str] = typer.Argument(..., help="Arch strings or NB201 indices."),
    fmt: str = typer.Option("onnx", "--format", help="onnx | tflite"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="Output folder (content-addressed cache)."),
    resolution: int = typer.Option(32, "--resolution"),
    classes: int = typer.Option(10, "--classes"),
) -> None:
    """Export NB201 networks to ONNX or TFLite."""
    from latfarm.services.domain.model_files import export_cli

    export_cli(archs, fmt=fmt, out=out, resolution=resolution, classes=classes)


def export_data(
    device: str = typer.Argument(..., help="Device name."),
    fmt: str = typer.Option("csv", "--format", help="csv | latbench"),
    out: Path = typer.Option(..., "--out", help="Output file."),
    db: str = DbUrl,
    data_dir: Path = DataDir,
) -> None:
    """Export a device's measurements as CSV or a LatBench pickle."""
    from latfarm.services.core.config import Settings
    from latfarm.services.datasets import export_dataset

    export_dataset(Settings.from_env(db_url=db, data_dir=data_dir), device, fmt=fmt, out=out)
