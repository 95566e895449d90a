"""Every ``latfarm ... --help`` follows the help-text rules of services/cli/options.py."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from latfarm.services.cli import app


def commands(command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """``command`` and every command and group under it, with their paths (typer's groups have ``commands``)."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += commands(sub, (*path, name))
    return found


COMMANDS = commands(typer.main.get_command(app))


def help_rows(path: tuple[str, ...]) -> list[str]:
    """The help screen's lines, rendered wide enough that no option's row wraps."""
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="latfarm", env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return [line.strip("│ ").strip() for line in result.output.splitlines() if line.strip()]


def test_every_command_is_checked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "agent", "up", "measure", "serve", "export", "export data", "export model", "eval"} <= names
    assert "eval transfer" in names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) or "latfarm" for path, _ in COMMANDS])
def test_help_text_rules(path, command):
    where = " ".join(("latfarm", *path))
    texts = [command.help or ""] + [getattr(param, "help", None) for param in command.params]
    for param, text in zip(command.params, texts[1:], strict=True):
        assert text, f"{where} {param.opts}: no help text"
    rows = help_rows(path)
    for text in filter(None, texts):
        # a help text as rendered: from its first words to the row's end (the default, env var and range follow)
        shown = [row[row.index(text[:25]) :] for row in rows if text[:25] in row]
        for part in shown:
            assert "  " not in part, f"{where}: double space in {part!r}"
    for row in rows:
        assert "<bool>" not in row, f"{where}: flag shown as taking a value: {row}"
        assert not re.search(r"--[\w-]+,\S", row), f"{where}: option names run together: {row}"
        assert len(re.findall(r"default", row, flags=re.IGNORECASE)) <= 1, f"{where}: default shown twice: {row}"
        assert not re.search(r" [.,;:)]", row.replace("...", "")), f"{where}: stray space: {row}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) or "latfarm" for path, _ in COMMANDS])
def test_each_paragraph_of_a_docstring_is_one_flowing_line(path, command):
    """Rendered wider than any paragraph, each docstring paragraph is one row: its source line breaks are not kept
    (on a terminal they broke lines short, before the terminal's own wrapping)."""
    import inspect

    result = CliRunner().invoke(app, [*path, "--help"], prog_name="latfarm", env={"COLUMNS": "2000"})
    rows = [line.strip("│ ").strip() for line in result.output.splitlines()]
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        assert " ".join(line.strip() for line in paragraph.splitlines()) in rows, (path, paragraph)


def test_flags_and_defaults_read_as_they_work():
    agent = "\n".join(help_rows(("agent",)))
    assert re.search(r"--tls\s+Connect over TLS", agent)  # a flag, no value
    assert re.search(r"--runs .*\[default: \(20\)\]", agent) and "[default: 0]" not in agent
    up = "\n".join(help_rows(("up",)))
    assert re.search(r"--http-port .*REST port.*8000", up) and re.search(r"--grpc-port .*gRPC port.*50051", up)
    assert "keys. [default: (latfarm-data)]" in up


def test_samples_help_gives_the_range_adapt_takes_and_predict_its_exit_status():
    from latfarm.services.domain.samples import MAX_SAMPLES, MIN_SAMPLES

    for command in ("adapt", "up"):
        assert f"predictor, {MIN_SAMPLES}-{MAX_SAMPLES}" in "\n".join(help_rows((command,)))
    assert "exit status 1 when no arch has an estimate" in " ".join(help_rows(("predict",)))


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
    refused = CliRunner().invoke(app, ["agent", "--server", "127.0.0.1:1", "--rounds", "1001"], env={"COLUMNS": "200"})
    shown = " ".join(refused.output.replace("│", "").split())
    assert refused.exit_code == 2 and "'--rounds'" in shown and "must be between 1 and 1000, got 1001" in shown, shown
