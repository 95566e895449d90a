"""Typer options that several command modules share."""

from __future__ import annotations

import typer

DataDir = typer.Option(None, "--data-dir", help="Folder for the SQLite file, artifacts, keys [latfarm-data].")
DbUrl = typer.Option(None, "--db", help="SQLAlchemy URL; default: SQLite file in the data folder.")
