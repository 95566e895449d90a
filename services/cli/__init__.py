"""The ``latfarm`` command line: the typer app assembled from the command modules, in help order.

Command modules import their role's code when a command runs, so the agent-only install (no torch, web stack or
SQL) can run ``latfarm agent``; each command's class names the extra it needs (``options.needs``), which a command
run without it names in one line with the ``pip install`` line for this installation (``core.extras``).
"""

from __future__ import annotations

import os

# The predictor's linear algebra is small (hundreds of rows) and runs beside request threads: BLAS threads only add
# contention (an FBNet adaptation took 2-4x longer with OpenBLAS's default threads on a busy 2-core machine). Set
# before the imports below (the agent's imports numpy); a value of the user's own wins. Children inherit it.
for _blas_threads in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_threads, "1")

import typer  # noqa: E402 - after the BLAS setting

from latfarm.services.cli import agent, data, devices, keys, remote, research, server_commands  # noqa: E402
from latfarm.services.cli.options import Command, Group, needs  # noqa: E402

app = typer.Typer(
    cls=Group,
    help="latfarm: on-device latency measurement and prediction for hardware-aware NAS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
SERVER, CLIENT = needs("server"), needs("client")
app.command(cls=SERVER)(server_commands.serve)
app.command(cls=SERVER)(server_commands.migrate)
app.command(cls=Command)(agent.agent)
app.command(cls=SERVER)(server_commands.up)
app.command("import", cls=SERVER)(data.import_)
app.command(cls=CLIENT)(remote.predict)
app.command(cls=CLIENT)(remote.measure)
app.command(cls=CLIENT)(devices.results)
app.command(cls=CLIENT)(remote.cancel)
app.command(cls=CLIENT)(remote.adapt)
app.command(cls=SERVER)(research.pretrain)

device_app = typer.Typer(cls=Group, help="Register and list devices, enroll their agents.", no_args_is_help=True)
device_app.command("add", cls=CLIENT)(devices.device_add)
device_app.command("list", cls=CLIENT)(devices.device_list)
device_app.command("enroll", cls=CLIENT)(devices.device_enroll)
app.add_typer(device_app, name="device")

key_app = typer.Typer(cls=Group, help="Create, list and revoke API keys (an admin key).", no_args_is_help=True)
key_app.command("create", cls=CLIENT)(keys.key_create)
key_app.command("list", cls=CLIENT)(keys.key_list)
key_app.command("revoke", cls=CLIENT)(keys.key_revoke)
app.add_typer(key_app, name="key")

export_app = typer.Typer(
    cls=Group, help="Export models (ONNX / TFLite) or a device's measurements.", no_args_is_help=True
)
export_app.command("model", cls=SERVER)(data.export_model)
export_app.command("data", cls=SERVER)(data.export_data)
export_app.command("device", cls=CLIENT)(devices.export_device)
app.add_typer(export_app, name="export")

eval_app = typer.Typer(cls=Group, help="Evaluate the predictor.", no_args_is_help=True)
eval_app.command("transfer", cls=SERVER)(research.eval_transfer)
app.add_typer(eval_app, name="eval")
