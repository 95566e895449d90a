"""What several commands print the same way: rows as a table or as JSON (``--json``), and what an export wrote."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer

JsonOption = typer.Option(False, "--json", help="Print the server's JSON answer instead of a table.")


def show_rows(rows: list[dict], columns: Sequence[str], json_out: bool, none: str) -> None:
    """``rows`` as JSON, else as a table of ``columns`` (a list: comma-separated; a flag: yes or no; None: ``-``),
    or the line ``none`` when there are none."""
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(none)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")  # a narrow terminal wraps a cell, never cuts it
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console = Console()
    if not console.is_terminal:  # a pipe or file: every row on one line, however wide
        console = Console(width=console.measure(table, options=console.options.update_width(10_000)).maximum)
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def exported(entries: int, fmt: str) -> str:
    """What an export of ``entries`` entries in format ``fmt`` wrote: ``5 measurements`` (CSV: a line each), ``3 archs
    (each the median of its measurements)`` (LatBench: an entry per arch)."""
    if fmt == "csv":
        return f"{entries} measurements"
    return f"{entries} archs (each the median of its measurements)"
