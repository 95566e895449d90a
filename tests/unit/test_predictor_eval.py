"""`latfarm eval transfer` on a tiny run: JSON layout, dump files, determinism, --calibrate."""

import json
import re

import numpy as np
import pytest

from latfarm.predictor.evaluate import TransferInputError, eval_transfer_cli
from latfarm.predictor.help_data import load_help
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.scores import score


def test_eval_transfer_json_and_dump(help_dir, tmp_path):
    train, test = ["1080ti_32", "silver_4210r", "essential_ph_1"], ["titan_rtx_32"]
    args = dict(samples=[5], trials=2, seed=7, cache_dir=tmp_path / "cache", epochs=1)
    out = eval_transfer_cli(help_dir, train, test, json_out=tmp_path / "r.json", dump=tmp_path / "dump", **args)
    saved = json.loads((tmp_path / "r.json").read_text())
    block = saved["samples"]["5"]
    assert set(block) >= {"mean_spearman", "mean_kendall", "mean_acc10", "per_device"}
    assert set(block["per_device"]) == {"titan_rtx_32"}
    dev = block["per_device"]["titan_rtx_32"]
    assert set(dev) >= {"spearman", "kendall", "acc10"}
    assert 0.8 < dev["spearman"] <= 1 and 0 < dev["kendall"] <= dev["spearman"] and 0 <= dev["acc10"] <= 1
    runs = [np.load(tmp_path / "dump" / f"titan_rtx_32_k5_t{t}.npz") for t in range(2)]
    for run in runs:
        assert run["samples"].shape == (5,) and len(set(run["samples"].tolist())) == 5
        assert run["pred_ms"].shape == (NUM_ARCHS,)
    assert set(runs[0]["samples"].tolist()) != set(runs[1]["samples"].tolist())  # trials differ
    assert list((tmp_path / "cache").glob("*.npz"))  # pretrained once, cached by data hash
    again = eval_transfer_cli(help_dir, train, test, json_out=None, dump=None, **args)
    assert again["samples"] == out["samples"]


def test_eval_transfer_calibrate_scores_the_archs_neither_sampled_nor_calibrating(help_dir, tmp_path, capsys):
    """``--calibrate 10``: each run fits 10 random measured archs besides its K as calibrating archs and scores the
    others; the JSON and the table header say R."""
    train, test = ["1080ti_32", "silver_4210r", "essential_ph_1"], ["titan_rtx_32"]
    out = eval_transfer_cli(
        help_dir, train, test, samples=[5], trials=1, seed=7, json_out=tmp_path / "r.json", dump=tmp_path / "dump",
        cache_dir=tmp_path / "cache", epochs=1, calibration=10,
    )  # fmt: skip
    assert "calibrated on 10 random archs" in " ".join(capsys.readouterr().out.split())
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["calibration"] == 10
    dev = saved["samples"]["5"]["per_device"]["titan_rtx_32"]
    assert 0 < dev["coverage_1sd"] <= dev["coverage_2sd"] <= 1 and dev["std_factor"] > 0
    run = np.load(tmp_path / "dump" / "titan_rtx_32_k5_t0.npz")
    assert run["calibrating"].shape == (10,) and not set(run["calibrating"]) & set(run["samples"])
    lat = load_help(help_dir, test)["titan_rtx_32"]
    rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), np.r_[run["samples"], run["calibrating"]])
    assert len(rest) == np.count_nonzero(~np.isnan(lat)) - 15
    assert dev["spearman"] == pytest.approx(score(run["pred_ms"][rest], lat[rest])["spearman"])
    assert out["samples"]["5"]["per_device"]["titan_rtx_32"]["spearman"] == dev["spearman"]


def _copy_help(help_dir, folder, devices, extra):
    """A HELP-layout folder with ``devices`` copied from the shared data and ``extra`` (``{name: ms array}``)."""
    import shutil

    import torch

    (folder / "latency").mkdir(parents=True)
    for name in devices:
        shutil.copy(help_dir / "latency" / f"{name}.pt", folder / "latency")
    for name, values in extra.items():
        torch.save(values, folder / "latency" / f"{name}.pt")  # numpy arrays, as torch.save keeps them
    return folder


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # the constant device, on purpose
def test_eval_transfer_keeps_other_ks_skips_thin_devices_and_writes_null(help_dir, tmp_path):
    """A device with 8 measured archs is skipped for K=10 (not K=5); a constant device's undefined correlation is
    ``null`` in the JSON, not NaN."""
    train = ["1080ti_32", "silver_4210r", "essential_ph_1"]
    sparse = np.full(NUM_ARCHS, np.nan)
    sparse[:8] = np.linspace(1.0, 3.0, 8)
    folder = _copy_help(help_dir, tmp_path / "help", train, {"sparse": sparse, "flat": np.full(NUM_ARCHS, 4.0)})
    out = eval_transfer_cli(
        folder, train, ["sparse", "flat"], samples=[5, 10], trials=1, seed=0, json_out=tmp_path / "r.json",
        dump=None, cache_dir=tmp_path / "cache", epochs=1,
    )  # fmt: skip
    assert set(out["samples"]["5"]["per_device"]) == {"sparse", "flat"}
    assert set(out["samples"]["10"]["per_device"]) == {"flat"}
    assert out["samples"]["10"]["skipped"] == {"sparse": "8 measured archs; K=10 needs at least 13"}
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["samples"]["5"]["per_device"]["flat"]["spearman"] is None


def _eval_transfer(help_dir, args: list[str]):
    from typer.testing import CliRunner

    from latfarm.services.cli import app

    base = {"--data": str(help_dir), "--train": "1080ti_32,silver_4210r", "--test": "titan_rtx_32"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    return CliRunner().invoke(app, ["eval", "transfer", *[x for pair in base.items() for x in pair]])


K_VALUES = "Invalid value for '--samples': K values must be comma-separated integers >= 1"
CALIBRATION = "Invalid value for '--calibrate': calibration must be 0 or between 10 and 200 archs"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--samples", "5,abc"], f"{K_VALUES} (like 5,10,20), got '5,abc'"),
        (["--samples", "0"], f"{K_VALUES} (like 5,10,20), got '0'"),
        (["--trials", "0"], "Invalid value for '--trials': must be at least 1, got 0"),
        (["--calibrate", "5"], f"{CALIBRATION}, got 5"),
        (["--calibrate", "201"], f"{CALIBRATION}, got 201"),
    ],
)
def test_eval_transfer_options_out_of_range_are_usage_errors_naming_the_option(help_dir, args, problem):
    result = _eval_transfer(help_dir, args)
    shown = " ".join(result.output.replace("│", " ").split())  # as the usage box wraps it
    assert result.exit_code == 2 and problem in shown, result.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--test", "nope"], "unknown devices ['nope']"),
    ],
)
def test_eval_transfer_input_only_the_data_refuses_is_one_line(help_dir, args, problem):
    result = _eval_transfer(help_dir, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith(f"latfarm eval transfer: {problem}"), result.output


@pytest.mark.parametrize(
    ("samples", "trials", "problem"),
    [
        ([], 1, "need at least one K (--samples)"),
        ([5, 0], 1, "--samples: each K must be at least 1, got 0"),
        ([5], 0, "--trials must be at least 1, got 0"),
    ],
)
def test_eval_transfer_called_from_python_refuses_runs_in_the_ranges_wording(help_dir, samples, trials, problem):
    with pytest.raises(TransferInputError, match=f"^{re.escape(problem)}$"):
        eval_transfer_cli(help_dir, ["a"], ["b"], samples, trials, 0, None, None)
