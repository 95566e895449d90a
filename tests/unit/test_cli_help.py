"""Every ``latfarm ... --help`` follows the help-text rules of services/cli/options.py."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from latfarm.services.cli import app

BUILT_IN = {"--help", "--install-completion", "--show-completion"}  # typer's own options


def commands(group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every leaf command under ``group`` with its path (typer's groups have ``commands``)."""
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = commands(typer.main.get_command(app))


def help_rows(path: tuple[str, ...]) -> list[str]:
    """The help screen's lines, rendered wide enough that no option's row wraps."""
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="latfarm", env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return [line.strip("│ ").strip() for line in result.output.splitlines() if line.strip()]


def test_every_command_is_checked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"agent", "up", "measure", "serve", "export data", "export model", "eval transfer"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_help_text_rules(path, command):
    for param in command.params:
        assert getattr(param, "help", None), f"{' '.join(path)} {param.opts}: no help text"
    rows = help_rows(path)
    for row in rows:
        assert len(re.findall(r"default", row, flags=re.IGNORECASE)) <= 1, f"default shown twice: {row}"
        assert "[default: 0]" not in row or "(default" not in row, row
        assert not re.search(r" [.,;:)]", row.replace("...", "")), f"stray space: {row}"
        option = row.split()[0].lstrip("*").strip() or row.split()[1]
        if "<bool>" in row:
            assert option in BUILT_IN, f"flag shown as taking a value: {row}"


def test_flags_and_defaults_read_as_they_work():
    agent = "\n".join(help_rows(("agent",)))
    assert re.search(r"--tls\s+Connect over TLS", agent)  # a flag, no value
    assert re.search(r"--runs .*\[default: \(20\)\]", agent) and "[default: 0]" not in agent
    up = "\n".join(help_rows(("up",)))
    assert re.search(r"--http-port .*REST port.*8000", up) and re.search(r"--grpc-port .*gRPC port.*50051", up)
    assert "keys. [default: (latfarm-data)]" in up


def test_agent_defaults_none_keep_the_measurement_defaults(monkeypatch):
    from latfarm.agents.measurement import MeasureSettings

    seen = {}
    monkeypatch.setattr("latfarm.agents.main.run_agent", lambda options: seen.setdefault("options", options))
    result = CliRunner().invoke(app, ["agent", "--server", "127.0.0.1:1", "--rounds", "3"])
    assert result.exit_code == 0, result.output
    options = seen["options"]
    defaults = MeasureSettings()
    assert options.measure.rounds == 3
    assert options.measure.runs_per_round == defaults.runs_per_round
    assert options.measure.timeout_s == defaults.timeout_s
    assert options.max_jobs == 0  # the server's limit
