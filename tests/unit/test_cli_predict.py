"""``latfarm predict`` against a live server: UNSTABLE measurements marked as ``measure`` marks them, and exit 1
with the CLI command as the hint when no arch has an estimate."""

from __future__ import annotations

from types import SimpleNamespace

from typer.testing import CliRunner

from latfarm.services.cli import app
from tests.api_support import ADMIN_KEY, add_measurements, arch
from tests.unit.test_cli_measure import add_device_live


def test_no_estimate_for_any_arch_exits_1_and_names_the_adapt_command(live_api):
    url, server = live_api
    add_device_live(server)
    result = CliRunner().invoke(app, ["predict", "gpu-b2", "0", "1", "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("no estimate  ") for line in lines)
    assert "latfarm adapt gpu-b2 --samples K" in lines[0] and "/v1/" not in result.output


def test_an_unstable_measurement_is_marked_and_one_estimate_exits_0(live_api):
    url, server = live_api
    add_device_live(server)
    add_measurements(SimpleNamespace(app=server), "gpu-b2", {5: 3.0}, unstable=True)
    add_measurements(SimpleNamespace(app=server), "gpu-b2", {6: 4.0})
    result = CliRunner().invoke(app, ["predict", "gpu-b2", "5", "6", "7", "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 0, result.output
    unstable, stable, none = result.output.strip().splitlines()
    assert unstable == f"3.0000 ms {'':8}  measured   UNSTABLE  {arch(5)}"
    assert stable == f"4.0000 ms {'':8}  measured   {arch(6)}"
    assert none.startswith(f"no estimate  {arch(7)}: ")


def test_an_arch_in_each_of_the_three_forms_is_the_same_arch(live_api):
    """A string, an index list in brackets (spaces or none) and a reference position; a bad index list is the
    server's one line naming its place."""
    from latfarm.predictor import nb201

    url, server = live_api
    add_device_live(server)
    add_measurements(SimpleNamespace(app=server), "gpu-b2", {6: 4.0})
    ops = nb201.from_official_index(6)
    forms = [arch(6), f"[{','.join(map(str, ops))}]", f" [ {', '.join(map(str, ops))} ] ", "6"]
    result = CliRunner().invoke(app, ["predict", "gpu-b2", *forms, "--server", url, "--key", ADMIN_KEY])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [f"4.0000 ms {'':8}  measured   {arch(6)}"] * 4
    bad = CliRunner().invoke(app, ["predict", "gpu-b2", "6", "[0,1,2,3,4,9]", "--server", url, "--key", ADMIN_KEY])
    assert bad.exit_code == 2  # before any request (tests/unit/test_cli.py's table)
    assert "archs[1]: nb201: op vector entry 5 is 9; op ids are 0..4" in " ".join(bad.output.replace("│", "").split())


def test_a_prediction_shows_its_standard_deviation_in_the_column_a_measurement_leaves_blank():
    from latfarm.services.cli.measure_results import prediction_line

    predicted = {"latency_ms": 2.10344, "std_ms": 0.09131, "source": "predicted", "arch": arch(9)}
    measured = {"latency_ms": 4.0, "std_ms": 0.01, "source": "measured", "arch": arch(6)}
    assert prediction_line(predicted) == f"2.1034 ms ± 0.0913  predicted  {arch(9)}"
    assert prediction_line(measured) == f"4.0000 ms {'':8}  measured   {arch(6)}"
    assert prediction_line(predicted).index("predicted") == prediction_line(measured).index("measured")
