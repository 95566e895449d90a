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
    (tmp_path / "archs.pickle").write_bytes(b"\x80\x04\x95\x00")  # a binary file given as the list
    with pytest.raises(typer.BadParameter, match="archs.pickle: not UTF-8 text .* at byte 0"):
        read_archs(tmp_path / "archs.pickle")


def test_measure_needs_archs_and_names_a_missing_file(tmp_path):
    runner = CliRunner()
    nothing = runner.invoke(app, ["measure", "dev1", "--server", "http://127.0.0.1:9"])
    assert nothing.exit_code == 2 and "give archs, --from FILE or --random N" in nothing.output
    missing = runner.invoke(app, ["measure", "dev1", "--from", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


@pytest.mark.parametrize(
    "command",
    [
        ["pretrain", "--data", "no-such-folder", "--out", "x.pt"],
        ["eval", "transfer", "--data", "no-such-folder", "--train", "a", "--test", "b"],
        ["import", "--format", "help", "no-such-folder"],
        ["export", "model", "0"],
        ["export", "data", "dev", "--out", "x.csv"],
        ["predict", "dev", "0", "--server", "http://127.0.0.1:9", "--key", "k"],
        ["measure", "dev", "0", "--server", "http://127.0.0.1:9", "--key", "k"],
        ["adapt", "dev", "--server", "http://127.0.0.1:9", "--key", "k"],
    ],
)
def test_an_unknown_space_is_a_usage_error_naming_the_known_ones_before_anything_is_read(
    command, tmp_path, monkeypatch
):
    """Every ``--space`` is a choice of the registered spaces: exit 2 before a folder, a database or a server is
    touched (none of them exists here), and nothing is written (no data folder, no artifacts)."""
    monkeypatch.chdir(tmp_path)
    first = next((i for i, word in enumerate(command) if word.startswith("--")), len(command))  # options: in order
    args = [*command[:first], "--space", "ofa", *command[first:]]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    shown = " ".join(result.output.replace("│", "").split())
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--space': unknown search space 'ofa'; known: fbnet, nb201" in shown, result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["import", "no-such-folder", "--format", "xls"], "'--format': must be one of help, latbench, hwnasbench"),
        (["export", "data", "dev", "--out", "x.csv", "--format", "xls"], "'--format': must be one of csv, latbench"),
        (["export", "model", "0", "--format", "xls"], "'--format': must be one of onnx, tflite, got 'xls'"),
        (["export", "model", "0", "--precision", "fp8"], "'--precision': must be one of fp32, fp16, int8, got 'fp8'"),
        (
            ["export", "model", "0", "--graph", "fused"],
            "'--graph': must be one of reference, pruned (the graphs of nb201), got 'fused'",
        ),
        (  # a graph of another space: the chosen space's graphs, whatever the order of the options
            ["export", "model", "--graph", "pruned", "0", "--space", "fbnet"],
            "'--graph': must be one of reference (the graphs of fbnet), got 'pruned'",
        ),
        (["export", "device", "dev", "--out", "x.csv", "--format", "xls"], "'--format': must be one of csv, latbench"),
        (["measure", "dev", "0", "--format", "tflit"], "'--format': must be one of onnx, tflite, got 'tflit'"),
        (["measure", "dev", "0", "--statistic", "mean"], "'--statistic': must be one of min, median, got 'mean'"),
        (["measure", "dev", "0", "--precision", "fp64"], "'--precision': must be one of fp32, fp16, int8, got 'fp64'"),
        (
            ["measure", "dev", "--graph", "pruned", "0", "--space", "fbnet"],
            "'--graph': must be one of reference (the graphs of fbnet), got 'pruned'",
        ),
        (["device", "add", "dev", "--precision", "fp64"], "'--precision': must be one of fp32, fp16, int8"),
        (["device", "add", "dev", "--runtime", "tensorrt"], "'--runtime': must be one of onnxruntime, litert"),
        (
            ["agent", "--server", "127.0.0.1:1", "--statistic", "mean"],
            "'--statistic' (env var: 'LATFARM_AGENT_STATISTIC'): must be one of min, median, got 'mean'",
        ),
        (["export", "model", "0", "--space", "fbnet", "--classes", "10"], "'--classes': 32px with 10 classes is not"),
    ],
)
def test_a_value_outside_an_options_fixed_set_is_a_usage_error_listing_the_set(
    command, expected, tmp_path, monkeypatch
):
    """Options with a fixed set of values (their one home: the space, the conditions, the formats, the wire's
    statistics) are checked as the command line is read: exit 2 naming the option, before any folder, database or
    server is touched (none exists here; no data folder, no artifacts)."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {expected}" in " ".join(result.output.replace("│", "").split()), result.output
    assert not list(tmp_path.iterdir())


RULE = "use 1-128 ASCII letters, digits, '.', '_' or '-', not dots only"
NOWHERE = ["--server", "http://127.0.0.1:9", "--key", "k"]  # never asked: the values are checked first


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["predict", "a/b", "0", *NOWHERE], f"'DEVICE': device name 'a/b' is not allowed: {RULE}"),
        (["measure", "..", "0", *NOWHERE], f"'DEVICE': device name '..' is not allowed: {RULE}"),
        (["adapt", "a b", *NOWHERE], f"'DEVICE': device name 'a b' is not allowed: {RULE}"),
        (["adapt", "gpu?x", "--no-wait", *NOWHERE], f"'DEVICE': device name 'gpu?x' is not allowed: {RULE}"),
        (["adapt", "..", "--status", *NOWHERE], f"'DEVICE': device name '..' is not allowed: {RULE}"),
        (["device", "add", "a/b", *NOWHERE], f"'NAME': device name 'a/b' is not allowed: {RULE}"),
        (["device", "add", "", *NOWHERE], f"'NAME': device name '' is not allowed: {RULE}"),
        (["key", "create", "", "--scope", "admin", *NOWHERE], "'NAME': its length must be between 1 and 128, got 0"),
        (["key", "revoke", "0", *NOWHERE], "'ID': must be at least 1, got 0"),
        (["key", "revoke", "abc", *NOWHERE], "'ID': must be a whole number, got 'abc'"),
        (["key", "revoke", "-3", *NOWHERE], "'ID': must be at least 1, got -3"),
        (["adapt", "dev", "--samples", "ten", *NOWHERE], "'--samples': must be a whole number, got 'ten'"),
        (["device", "enroll", "dev", "--expires-in", "1.5", *NOWHERE], "'--expires-in': must be a whole number"),
        (["device", "enroll", "a/b", *NOWHERE], f"'DEVICE': device name 'a/b' is not allowed: {RULE}"),
        (["export", "device", "a/b", "--out", "x.csv", *NOWHERE], "'DEVICE': device name 'a/b' is not allowed"),
        (["export", "data", "a/b", "--out", "x.csv"], f"'DEVICE': device name 'a/b' is not allowed: {RULE}"),
        (["import", "--device", "a/b", "x"], f"'--device': device name 'a/b' is not allowed: {RULE}"),
        (["import", "nope"], "'PATH': nope: no such file or folder"),
        (["import", "."], "'PATH': .: not a HELP folder (needs latency/<device>.pt)"),
        (["import", ".", "--format", "csv"], "'PATH': . is a folder; --format csv reads a file"),
        (["up", "--datasets", "."], "'--datasets': .: not a HELP folder (needs latency/<device>.pt)"),
        (["up", "--datasets", "nope"], "'--datasets': nope: no such folder"),
        (["up", "--device", "lab/pixel7"], f"'--device': device name 'lab/pixel7' is not allowed: {RULE}"),
        (["results", "deadbeef", *NOWHERE], "'BATCH...': not a job batch id: 'deadbeef' (a batch id is 32 hex digits)"),
        (["cancel", "0" * 32, "a/b", *NOWHERE], "'BATCH...': not a job batch id: 'a/b' (a batch id is 32 hex digits)"),
        (
            ["predict", "dev", "xyz", *NOWHERE],
            "'ARCHS...': archs[0]: nb201: 'xyz': expected 3 node groups joined by '+'",
        ),
        (
            ["predict", "dev", "6", "[0,1,2,3,4,9]", *NOWHERE],
            "'ARCHS...': archs[1]: nb201: op vector entry 5 is 9; op ids are 0..4",
        ),
        (
            ["predict", "dev", *NOWHERE, "--", "-1"],
            "'ARCHS...': archs[0]: nb201: reference position -1 is outside 0..15624",
        ),
        (  # without "--" alike: a negative number is an argument, wherever the options stand
            ["predict", "dev", "0", "-1", "--space", "fbnet", *NOWHERE],
            "'ARCHS...': archs[1]: fbnet: reference position -1 is outside 0..4999",
        ),
        (
            ["export", "model", "-2", "--format", "onnx"],
            "'ARCHS...': archs[0]: nb201: reference position -2 is outside",
        ),
        (["measure", "dev", "[0,1,2,3,4]", *NOWHERE], "'ARCHS...': archs[0]: nb201: op vector must have 6 entries"),
        (["export", "model", "99999"], "'ARCHS...': archs[0]: nb201: reference position 99999 is outside 0..15624"),
        (["pretrain", "--data", "nope", "--out", "x.pt"], "'--data': nope: no such folder"),
        (["pretrain", "--data", ".", "--out", "x.pt"], "'--data': .: not a HELP folder (needs latency/<device>.pt)"),
        (["eval", "transfer", "--data", ".", "--train", "a", "--test", "b"], "'--data': .: not a HELP folder"),
        (["eval", "transfer", "--data", "nope", "--train", "a", "--test", "b"], "'--data': nope: no such folder"),
        (["pretrain", "--data", __file__, "--out", "x.pt"], f"'--data': {__file__} is a file; give the HELP folder"),
    ],
)
def test_a_malformed_value_is_a_usage_error_before_anything_is_touched(command, expected, tmp_path, monkeypatch):
    """A value the command line can check without a server (device names, batch ids, archs, folders) is a usage
    error as an out-of-range option is: exit 2, typer's "Invalid value for" line, before any folder, database or
    server is touched (none exists here; nothing is written). Exit 1 is left to refusals and runtime failures."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    shown = [line.strip("│ ") for line in result.output.splitlines() if "Invalid value" in line]
    assert result.exit_code == 2 and len(shown) == 1, result.output
    assert shown[0].startswith(f"Invalid value for {expected}"), result.output
    assert not list(tmp_path.iterdir())


BATCH = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["adapt", "dev", "--samples", "5", "--no-wait", "--cancel"],
            "--cancel: --cancel starts no adaptation: drop --samples, --no-wait",
        ),
        (["adapt", "dev", "--cancel", "--calibrate", "0"], "--cancel: --cancel starts no adaptation: drop --calibrate"),
        (["adapt", "dev", "--status", "--wait"], "--status: --status starts no adaptation: drop --wait"),
        (["adapt", "dev", "--status", "--format", "onnx"], "--status: --status starts no adaptation: drop --format"),
        (
            ["adapt", "dev", "--status", "--wait-for-agent"],
            "--status: --status starts no adaptation: drop --wait-for-agent",
        ),
        (["adapt", "dev", "--status", "--cancel"], "--status: --cancel acts on the adaptation it would show"),
        (
            ["adapt", "dev", "--no-wait", "--wait-for-agent"],
            "--no-wait: --no-wait waits for nothing: drop --wait-for-agent",
        ),
        (
            ["measure", "dev", "1", "--no-wait", "--timeout", "9"],
            "--no-wait: --no-wait waits for nothing: drop --timeout",
        ),
        (
            ["measure", "dev", "1", "--wait-for-agent", "--no-wait"],
            "--no-wait: --no-wait waits for nothing: drop --wait-for-agent",
        ),
        (["results", BATCH, "--no-wait", "--timeout", "9"], "--no-wait: --no-wait waits for nothing: drop --timeout"),
        (["measure", "dev", "1", "--seed", "3"], "--seed: --seed draws nothing without --random N: drop --seed"),
        (["measure", "dev", "1", "--no-wait", "--out", "x.csv"], "--out: --no-wait does not wait for the results"),
    ],
)
def test_contradictory_flags_are_a_usage_error_before_any_request(command, expected, tmp_path, monkeypatch):
    """A mode flag (``--status``, ``--cancel``, ``--no-wait``) given with an option it makes meaningless is refused
    (exit 2, one "Invalid value for" line naming the mode), whatever their order; never one silently ignored.
    ``NOWHERE`` is a server that is never asked."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*command, *NOWHERE], env={"COLUMNS": "300"})
    shown = [line.strip("│ ") for line in result.output.splitlines() if "Invalid value" in line]
    assert result.exit_code == 2 and len(shown) == 1, result.output
    assert shown[0].startswith(f"Invalid value for {expected}"), result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "command",
    [
        ["adapt", "dev", "--status", "--space", "nb201"],
        ["adapt", "dev", "--cancel", "--space", "fbnet"],
        ["adapt", "dev", "--no-wait", "--samples", "5"],
        ["results", BATCH, "--timeout", "9"],
        ["measure", "dev", "--random", "3", "--seed", "3"],
    ],
)
def test_options_a_mode_uses_pass_the_usage_checks(command):
    """What each mode takes passes (``--space`` with ``--status``); it then asks the server, which is not there
    (exit 1, one line)."""
    result = CliRunner().invoke(app, [*command, *NOWHERE])
    assert result.exit_code == 1 and "Invalid value" not in result.output, result.output


@pytest.mark.parametrize("out", ["a-file", "a-file/models"])
def test_export_models_out_at_a_file_is_a_usage_error_before_anything_is_exported(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("mine")
    result = CliRunner().invoke(app, ["export", "model", "0", "--out", out], env={"COLUMNS": "300"})
    shown = " ".join(result.output.replace("│", "").split())
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '--out': {tmp_path / 'a-file'} is a file; give a folder (nothing was exported)" in shown
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["measure", "dev", "--random", "0"],
            "Invalid value for '--random' / '--sample': must be at least 1, got 0",
        ),
        (
            ["measure", "dev", "7", "--sample", "-2"],
            "Invalid value for '--random' / '--sample': must be at least 1, got -2",
        ),
        (["measure", "dev", "7", "--timeout", "0"], "Invalid value for '--timeout': must be greater than 0, got 0"),
        (["measure", "dev", "7", "--rounds", "0"], "Invalid value for '--rounds': must be between 1 and 1000, got 0"),
        (
            ["measure", "dev", "7", "--rounds", "1001"],
            "Invalid value for '--rounds': must be between 1 and 1000, got 1001",
        ),
        (
            ["measure", "dev", "7", "--runs", "10001"],
            "Invalid value for '--runs': must be between 1 and 10000, got 10001",
        ),
        (["measure", "dev", "7", "--warmup", "-1"], "Invalid value for '--warmup': must be between 0 and 1000, got -1"),
        (
            ["measure", "dev", "7", "--batch-size", "1025"],
            "Invalid value for '--batch-size': must be between 1 and 1024, got 1025",
        ),
        (["results", "0" * 32, "--timeout", "-1"], "Invalid value for '--timeout': must be greater than 0, got -1"),
        (["adapt", "dev", "--samples", "0"], "Invalid value for '--samples': samples must be between 3 and 200, got 0"),
        (
            ["device", "enroll", "dev", "--max-uses", "0"],
            "Invalid value for '--max-uses': must be between 1 and 100000, got 0",
        ),
        (
            ["device", "enroll", "dev", "--expires-in", "0"],
            "Invalid value for '--expires-in': must be greater than 0 and at most 31622400, got 0",
        ),
        (
            ["device", "add", "dev", "--batch-size", "0"],
            "Invalid value for '--batch-size': must be between 1 and 1024, got 0",
        ),
        (
            ["device", "add", "dev", "--resolution", "4"],
            "Invalid value for '--resolution': must be between 8 and 1024, got 4",
        ),
        (
            ["device", "add", "dev", "--classes", "100001"],
            "Invalid value for '--classes': must be between 1 and 100000, got 100001",
        ),
    ],
)
def test_a_numeric_option_out_of_range_is_named_with_its_range_before_any_request(args, expected):
    """What the server would refuse, the command refuses first: the whole range, read from the bounds' one home, in
    the API's wording."""
    result = CliRunner().invoke(app, [*args, "--server", "http://127.0.0.1:9", "--key", "k"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and expected in " ".join(result.output.replace("│", "").split()), result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["up", "--http-port", "70000"], "Invalid value for '--http-port': must be between 0 and 65535, got 70000"),
        (["up", "--grpc-port", "-5"], "Invalid value for '--grpc-port': must be between 0 and 65535, got -5"),
        (["serve", "--http-port", "70000"], "Invalid value for '--http-port': must be between 0 and 65535, got 70000"),
        (["serve", "--grpc-processes", "-1"], "Invalid value for '--grpc-processes': must be at least 0, got -1"),
    ],
)
def test_a_port_outside_0_65535_is_a_usage_error_before_anything_is_created(tmp_path, args, expected):
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "d")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and expected in " ".join(result.output.replace("│", "").split()), result.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "variable", "value", "expected"),
    [
        (["serve"], "LATFARM_HTTP_PORT", "abc", "latfarm serve: LATFARM_HTTP_PORT: must be a whole number, got 'abc'"),
        (["up"], "LATFARM_GRPC_PORT", "99999", "latfarm up: LATFARM_GRPC_PORT: must be between 0 and 65535, got 99999"),
    ],
)
def test_a_bad_setting_in_the_environment_is_one_line(tmp_path, args, variable, value, expected):
    result = CliRunner().invoke(app, args, env={variable: value, "LATFARM_DATA_DIR": str(tmp_path / "d")})
    assert result.exit_code == 1
    assert result.output.strip().startswith(expected) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
