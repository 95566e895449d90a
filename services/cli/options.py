"""Typer options that several command modules share, and the rules every option's help follows.

Help-text rules (tests/unit/test_cli_help.py checks them on every command): every parameter has a help text; a
default is shown once, as ``[default: X]``; an option whose real default is "someone else's" (the agent's, the
server's, the device's) defaults to None and says so in words; square brackets in help texts are escaped (``\\[``),
since the help is rich markup and ``[word]`` would vanish; boolean flags are made with ``flag`` (no value shown).
"""

from __future__ import annotations

from typing import Any

import typer

DataDir = typer.Option(
    None, "--data-dir", show_default="latfarm-data", help="Folder for the SQLite file, artifacts, keys."
)
DbUrl = typer.Option(None, "--db", show_default="SQLite file in the data folder", help="SQLAlchemy URL.")


def flag(default: bool, *names: str, help: str, **kwargs: Any) -> Any:
    """A boolean flag (``--x`` or ``--x/--no-x``) shown without a value type: typer would show ``<bool>``, which
    reads as if the flag took a value."""
    return typer.Option(default, *names, metavar="", help=help, **kwargs)
