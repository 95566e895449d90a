"""The ``latfarm`` command line: the typer app assembled from the command modules, in help order.

Command modules import their role's code when a command runs, so the agent-only install (no torch, web stack or
SQL) can run ``latfarm agent``.
"""

from __future__ import annotations

import typer

from latfarm.services.cli import agent, data, remote, research, server_commands

app = typer.Typer(
    help="latfarm: on-device latency measurement and prediction for hardware-aware NAS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server_commands.serve)
app.command()(server_commands.migrate)
app.command()(agent.agent)
app.command()(server_commands.up)
app.command("import")(data.import_)
app.command()(remote.predict)
app.command()(remote.measure)
app.command()(remote.cancel)
app.command()(remote.adapt)
app.command()(research.pretrain)

export_app = typer.Typer(help="Export models (ONNX / TFLite) or a device's measurements.", no_args_is_help=True)
export_app.command("model")(data.export_model)
export_app.command("data")(data.export_data)
app.add_typer(export_app, name="export")

eval_app = typer.Typer(help="Evaluate the predictor.", no_args_is_help=True)
eval_app.command("transfer")(research.eval_transfer)
app.add_typer(eval_app, name="eval")
