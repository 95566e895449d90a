"""Command-line helpers that need no server."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.cli.remote import read_archs


def test_read_archs_skips_blanks_and_comments(tmp_path):
    path = tmp_path / "archs.txt"
    path.write_text("# from a NAS run\n42\n\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|  # all none\n  7 \n")
    assert read_archs(path) == ["42", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "7"]
    with pytest.raises(typer.BadParameter, match="cannot read"):
        read_archs(tmp_path / "missing.txt")


def test_measure_needs_archs_and_names_a_missing_file(tmp_path):
    runner = CliRunner()
    nothing = runner.invoke(app, ["measure", "dev1", "--server", "http://127.0.0.1:9"])
    assert nothing.exit_code == 2 and "give archs, or --random N" in nothing.output
    missing = runner.invoke(app, ["measure", "dev1", "--from", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
