"""#15 item 9: one form for a bad arch in predict, measure and export model (``archs[i]: ...``), a negative number
taken as an arch with or without ``--`` before it, and usage lines that name arguments in capitals."""

from __future__ import annotations

from typer.testing import CliRunner

from latfarm.services.cli import app
from tests.api_support import ADMIN_KEY
from tests.unit.test_cli_measure import add_device_live

OUTSIDE = "archs[1]: nb201: reference position 99999 is outside 0..15624"


def test_a_bad_arch_reads_the_same_in_predict_measure_and_export(tmp_path):
    """A usage error of ARCHS, before any request or file (no server here)."""
    remote = ["--server", "http://127.0.0.1:9", "--key", ADMIN_KEY]
    for command in (
        ["predict", "gpu-b2", "0", "99999", *remote],
        ["measure", "gpu-b2", "0", "99999", *remote],
        ["export", "model", "0", "99999", "--format", "onnx", "--out", str(tmp_path / "models")],
    ):
        result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
        assert result.exit_code == 2 and f"Invalid value for 'ARCHS...': {OUTSIDE}" in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_a_negative_number_is_refused_as_no_position_with_or_without_dashes(live_api):
    """``predict DEVICE -1`` says what ``predict DEVICE -- -1`` says: the number is taken as an arch and refused as
    one, in the standard ``Invalid value for 'ARCHS...'`` line (no request is sent)."""
    url, server = live_api
    add_device_live(server)
    remote = ["--server", url, "--key", ADMIN_KEY]
    for command in (["predict", "gpu-b2", "-1", *remote], ["predict", "gpu-b2", *remote, "--", "-1"]):
        result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        shown = " ".join(result.output.replace("│", "").split())
        assert "Invalid value for 'ARCHS...': archs[0]: nb201: reference position -1 is outside 0..15624" in shown


def test_usage_lines_name_arguments_in_capitals():
    for command, usage in [
        (["import"], "latfarm import [OPTIONS] PATH"),
        (["predict"], "latfarm predict [OPTIONS] DEVICE ARCHS..."),
        (["measure"], "latfarm measure [OPTIONS] DEVICE [ARCHS...]"),
        (["export", "model"], "latfarm export model [OPTIONS] ARCHS..."),
    ]:
        shown = CliRunner().invoke(app, [*command, "--help"], prog_name="latfarm", terminal_width=120).output
        missing = CliRunner().invoke(app, command, prog_name="latfarm").output
        assert usage in shown and usage in missing, (shown, missing)
        assert "{" not in shown.split("Usage:")[1].splitlines()[0]
