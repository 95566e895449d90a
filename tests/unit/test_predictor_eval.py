"""`latfarm eval transfer` on a tiny run: JSON layout, dump files, determinism."""

import json

import numpy as np

from latfarm.predictor.evaluate import eval_transfer_cli
from latfarm.predictor.nb201 import NUM_ARCHS


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
