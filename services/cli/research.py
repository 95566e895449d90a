"""``latfarm pretrain`` and ``eval transfer``: the predictor's research commands (need the server extra's torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from latfarm.predictor.selection import k_values
from latfarm.services.cli.options import adapt_rule, bounded, help_folder, space_option


def _folder(data: Path) -> Path:
    """``--data``: a HELP folder (``options.help_folder``: one with latency/<device>.pt, as ``up --datasets`` and
    ``import`` take), else a usage error (what its files hold is the loader's to say)."""
    if not data.exists():
        raise typer.BadParameter(f"{data}: no such folder")
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is a file; give the HELP folder that holds latency/<device>.pt")
    return help_folder(data) or data


def _k_values(text: str) -> list[int]:
    """``--samples``: ``predictor.selection.k_values``, its ``ValueError`` a usage error."""
    try:
        return k_values(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def pretrain(
    data: Path = typer.Option(..., "--data", callback=_folder, help="HELP-layout folder."),
    devices: str = typer.Option(None, "--devices", show_default="all in the folder", help="Comma-separated devices."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write."),
    seed: int = typer.Option(0, "--seed", help="Random seed (initialisation, batches)."),
    space: str = space_option("Search space of the data"),
) -> None:
    """Pretrain the latency predictor on many devices (reproduces the shipped checkpoints)."""
    from latfarm.predictor.pretrain import pretrain_cli

    try:
        pretrain_cli(data, devices=devices.split(",") if devices else None, out=out, seed=seed, space=space)
    except (FileNotFoundError, ValueError) as err:  # no HELP folder or device file, a bad file: the loader names it
        raise SystemExit(f"latfarm pretrain: {err}") from err


def eval_transfer(
    data: Path = typer.Option(..., "--data", callback=_folder, help="HELP-layout folder."),
    train: str = typer.Option(..., "--train", help="Comma-separated pretraining devices."),
    test: str = typer.Option(..., "--test", help="Comma-separated unseen devices."),
    samples: Sequence[int] = typer.Option(
        "5,10,20", "--samples", parser=_k_values, metavar="<str>", help="Comma-separated K: measurements to adapt from."
    ),
    trials: int = typer.Option(
        5, "--trials", callback=bounded({"ge": 1}), help="Random draws of the K archs per device and K, at least 1."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (pretraining, sample draws)."),
    json_out: Path = typer.Option(None, "--json", help="Write the scores as JSON here."),
    dump: Path = typer.Option(None, "--dump", help="Write <device>_k<K>_t<trial>.npz per run."),
    space: str = space_option("Search space of the data"),
    calibration: int = typer.Option(
        0,
        "--calibrate",
        callback=adapt_rule("check_calibration"),
        help="R random measured archs per run, fitted too, calibrating std_ms; not scored: 0 or 10-200.",
    ),
) -> None:
    """Pretrain on --train devices, adapt to each --test device from K samples, score on the rest."""
    from latfarm.predictor.evaluate import TransferInputError, eval_transfer_cli

    try:
        eval_transfer_cli(
            data,
            train=train.split(","),
            test=test.split(","),
            samples=samples,
            trials=trials,
            seed=seed,
            json_out=json_out,
            dump=dump,
            space=space,
            calibration=calibration,
        )
    except TransferInputError as err:
        raise SystemExit(f"latfarm eval transfer: {err}") from err
