"""The FBNet predictor: analytic network costs, the shipped checkpoint, adaptation to any arch, eval transfer."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from latfarm.predictor import blr
from latfarm.predictor.blr import posterior_with_costs
from latfarm.predictor.evaluate import ReferencePredictor, eval_transfer_cli, transfer_scores
from latfarm.predictor.fbnet_features import layer_costs, network_costs
from latfarm.predictor.fbnet_model import (
    COST_CENTRES,
    COST_COLUMNS,
    FEATURE_NAMES,
    FBNetDeviceModel,
    FBNetPredictor,
    cost_scale,
    efficiency_cov,
    efficiency_directions,
    features,
    pretrain_fbnet,
)
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import Predictor
from latfarm.predictor.scores import coverage
from latfarm.predictor.spaces import ArchError, get_space
from latfarm.predictor.spaces.fbnet import load_reference
from tests.torch_costs import torch_macs

FBNET_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "help-fbnet"
SPACE = get_space("fbnet")


@pytest.fixture(scope="module")
def predictor() -> FBNetPredictor:
    return Predictor.load(space="fbnet")


def _torch_costs(encoding, variant: str) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of the built torch network, counted by forward hooks."""
    net = SPACE.build(encoding, variant)
    macs = torch_macs(net, SPACE.variant(variant).resolution)
    return macs, sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("variant", ["cifar100", "imagenet"])
def test_analytic_flops_and_params_match_the_torch_network(variant):
    archs = [*SPACE.sample(3, seed=4), (8,) * 22, (5,) * 22, (1,) * 22]
    costs = network_costs(np.asarray(archs), variant)
    for encoding, row in zip(archs, costs, strict=True):
        macs, params = _torch_costs(encoding, variant)
        assert (row[1], row[3]) == (macs, params)
    assert costs[3, 0] < costs[4, 0]  # all-skip launches fewer kernels than all-grouped blocks


def test_shipped_checkpoint_is_the_fbnet_one(predictor):
    assert isinstance(predictor, FBNetPredictor) and predictor.space.name == "fbnet"
    assert predictor.version.startswith("fbnet-") and len(predictor.devices) == 21
    assert Predictor.load().space.name == "nb201"  # the default stays NB201
    with pytest.raises(ValueError, match="unknown search space"):
        Predictor.load(space="darts")


def _device(archs: np.ndarray) -> np.ndarray:
    """A launch-bound device unlike the typical source: 0.05 ms per kernel plus 2 ms per GFLOP."""
    costs = network_costs(archs)
    return 1.0 + 0.05 * costs[:, 0] + 2e-9 * costs[:, 1]


def test_adapt_predicts_any_arch_with_spread(predictor):
    chosen = predictor.select_samples(20, seed=3)
    assert len(set(chosen)) == 20 and all(SPACE.parse(a) == a for a in chosen)
    assert predictor.select_samples(20, seed=3) == chosen
    assert not set(predictor.select_samples(5, seed=3, exclude=chosen[:5])) & set(chosen[:5])
    model = predictor.adapt([SPACE.to_string(a) for a in chosen], _device(np.asarray(chosen)))
    unseen = np.asarray(SPACE.sample(1000, seed=99))
    mean, std = model.predict(unseen)
    truth = _device(unseen)
    assert stats.spearmanr(mean, truth)[0] > 0.95
    assert np.mean(np.abs(mean / truth - 1) < 0.1) > 0.9
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    ranked = model.rank(unseen[:10])
    assert [tuple(r) for r in ranked] == [tuple(unseen[i]) for i in np.argsort(mean[:10], kind="stable")]
    p = model.prob_faster(unseen[:1], unseen[1:2])[0]
    assert (p > 0.5) == (mean[0] < mean[1])


def test_device_state_round_trips_through_json(predictor):
    archs = SPACE.sample(10, seed=5)
    model = predictor.adapt(archs, _device(np.asarray(archs)))
    state = json.loads(json.dumps(model.to_state()))
    again = FBNetDeviceModel.from_state(predictor, state)
    probe = np.asarray(SPACE.sample(50, seed=6))
    for a, b in zip(again.predict(probe), model.predict(probe), strict=True):
        np.testing.assert_allclose(a, b)
    assert state["archs"][0] == list(archs[0])
    assert state["std_factor"] == model.posterior.std_factor != 1.0


def test_the_leave_one_out_factor_scales_the_spread_by_fbnets_own_margin(predictor, monkeypatch):
    archs = SPACE.sample(20, seed=7)
    lat = _device(np.asarray(archs)) * np.exp(0.05 * np.random.default_rng(7).standard_normal(20))
    probe = np.asarray(SPACE.sample(50, seed=8))
    mean, std = predictor.adapt(archs, lat).predict(probe)
    monkeypatch.setattr(blr, "TAIL_MARGIN", 2 * blr.TAIL_MARGIN)
    mean_2, std_2 = predictor.adapt(archs, lat).predict(probe)
    np.testing.assert_array_equal(mean_2, mean)
    np.testing.assert_allclose(std_2, 2 * std)


def test_spikes_among_whole_ms_samples_pull_the_fit_less_than_under_gaussian_noise(predictor, monkeypatch):
    # Whole-ms samples (a phone runtime, 30-50 ms), 3 of 20 of them 60% slow: the Student-t noise keeps the fit
    # near the clean one.
    archs = np.asarray(SPACE.sample(20, seed=3))
    clean = np.round(10 * _device(archs) * (1 + 0.03 * np.random.default_rng(0).standard_normal(20)))
    spiked = np.round(clean * np.where(np.arange(20) < 3, 1.6, 1.0))
    unseen = np.asarray(SPACE.sample(500, seed=9))

    def pull() -> float:
        moved = predictor.adapt(archs, spiked).predict(unseen)[0] / predictor.adapt(archs, clean).predict(unseen)[0]
        return float(np.median(np.abs(moved - 1)))

    robust = pull()
    monkeypatch.setattr(blr, "T_ITERATIONS", 1)  # one step: the plain Gaussian fit
    assert robust < 0.6 * pull()


def test_a_device_like_one_source_is_centred_on_that_source(predictor):
    # A sibling of one source device (its head, 7.5 ms on average): 5 samples find it among the 21 candidates.
    assert predictor.sources.shape == (len(predictor.devices), len(FEATURE_NAMES))
    head = predictor.sources[predictor.devices.index("samsung_a50")]
    archs, unseen = np.asarray(SPACE.sample(5, seed=3)), np.asarray(SPACE.sample(500, seed=9))
    truth = 7.5 * features(unseen) @ head
    centred = predictor.adapt(archs, 7.5 * features(archs) @ head).predict(unseen)[0]
    prior, scale = predictor.prior, float(predictor.meta["default_scale_ms"])
    alone = posterior_with_costs(prior, features(archs), 7.5 * features(archs) @ head, scale, COST_COLUMNS)
    mean_only = alone.scale_ms * features(unseen) @ alone.mean
    assert np.median(np.abs(centred / truth - 1)) < 0.5 * np.median(np.abs(mean_only / truth - 1))
    assert stats.spearmanr(centred, truth)[0] > 0.99


def test_a_launch_bound_device_among_flop_bound_sources_is_ranked_from_5_samples():
    # Sources: four FLOP-bound boards (latency ~ FLOPs plus per-layer block costs of their own); the target is
    # launch-bound (a fixed cost per kernel, like a GPU at batch 1), a family none of them is. The cost-only
    # hypothesis (centred on latency ~ kernels launched) ranks it from 5 samples; the source hypotheses alone
    # cannot override the sources' block costs with so few.
    rng = np.random.default_rng(0)
    enc = np.asarray(SPACE.sample(1000, seed=1))
    phi = features(enc)
    hot = phi[:, 1 : 1 + 22 * 9]
    flops = phi[:, FEATURE_NAMES.index("cost_flops")]
    boards = {f"board{i}": (5 + i) * (flops + hot @ rng.uniform(0, 0.03, hot.shape[1])) for i in range(4)}
    predictor = pretrain_fbnet(enc, boards)
    archs, unseen = np.asarray(predictor.select_samples(5, seed=0)), np.asarray(SPACE.sample(500, seed=9))

    def launch_bound(a: np.ndarray) -> np.ndarray:
        return 0.04 * network_costs(a)[:, 0]

    truth = launch_bound(unseen)
    lat = launch_bound(archs) * (1 + 0.01 * rng.standard_normal(5))
    mean, std = predictor.adapt(archs, lat).predict(unseen)
    assert stats.spearmanr(mean, truth)[0] > 0.98
    assert np.median(np.abs(mean / truth - 1)) < 0.02
    assert np.mean(np.abs(mean - truth) <= 2 * std) > 0.9  # the spread covers the errors
    prior, scale = predictor.prior, float(predictor.meta["default_scale_ms"])
    sources_only = posterior_with_costs(prior, features(archs), lat, scale, COST_COLUMNS, predictor.sources)
    assert stats.spearmanr(features(unseen) @ sources_only.mean, truth)[0] < 0.95


def test_cost_centres_are_unit_cost_heads():
    # Each centre predicts one normalised cost: mean 1 over random archs, like a source head.
    assert COST_CENTRES.shape == (3, len(FEATURE_NAMES))
    assert np.all(COST_CENTRES[:, : COST_COLUMNS[0]] == 0)
    mean_prediction = features(np.asarray(SPACE.sample(4000, seed=2))) @ COST_CENTRES.T
    np.testing.assert_allclose(mean_prediction.mean(0), 1.0, atol=0.03)


def test_efficiency_directions_split_the_costs_by_block_type():
    # Summed over the 9 block types, the 27 columns are the kernels / MACs / memory traffic of the searchable layers.
    phi = features(np.asarray(SPACE.sample(50, seed=1)))
    by_block = (phi @ efficiency_directions()).reshape(50, 9, 3)
    fixed = layer_costs()[1][:3] / cost_scale()[:3]
    np.testing.assert_allclose(by_block.sum(1), phi[:, COST_COLUMNS[:3]] - fixed, rtol=1e-9)
    skip = 8  # the identity launches nothing where the shape is kept
    assert np.all(by_block[:, skip, 0] < by_block[:, :skip, 0].max(1))


def test_efficiency_cov_is_the_sources_deviations_from_their_own_costs():
    pool = features(np.asarray(SPACE.sample(500, seed=2)))
    np.testing.assert_allclose(efficiency_cov(COST_CENTRES, pool), 0, atol=1e-12)  # pure costs: no deviation
    # A block-type deviation the costs do not explain on the pool (orthogonal to an intercept and the costs there)
    # is recovered whole, whatever cost head it sits on.
    blocks = pool @ efficiency_directions()
    explained = np.hstack([np.ones((len(pool), 1)), pool[:, COST_COLUMNS]]).T @ blocks  # [5, 27]
    unexplained = np.linalg.svd(explained)[2][len(explained) :]  # [22, 27]
    deviation = efficiency_directions() @ unexplained.T @ np.random.default_rng(0).normal(0, 0.1, 22)
    sources = np.stack([COST_CENTRES[1] + deviation, 2 * COST_CENTRES[0] - deviation])
    np.testing.assert_allclose(efficiency_cov(sources, pool), np.outer(deviation, deviation), atol=1e-12)


def test_a_new_family_is_refined_along_the_sources_block_type_deviations():
    # FLOP-bound boards whose depthwise 5x5 blocks run at their own efficiencies (one shared pattern of block-type
    # deviations, each board's own size); the target is launch-bound, a family none of them is, with the same
    # pattern. The efficiency component learned from the boards lets 5 samples pin it; the cost-only fit cannot.
    rng = np.random.default_rng(1)
    enc = np.asarray(SPACE.sample(1000, seed=1))
    phi = features(enc)
    k5 = np.repeat(np.arange(9) // 4 == 1, 3)  # k5_e1, k5_e1_g2, k5_e3, k5_e6
    pattern = efficiency_directions() @ (np.tile([0.0, 1.0, -0.25], 9) * k5)
    boards = {f"board{i}": (5 + i) * phi @ (COST_CENTRES[1] + rng.uniform(0.5, 2) * pattern) for i in range(4)}
    predictor = pretrain_fbnet(enc, boards)
    archs, unseen = np.asarray(predictor.select_samples(5, seed=0)), np.asarray(SPACE.sample(500, seed=9))

    def launch_bound(a: np.ndarray) -> np.ndarray:
        return 3 * features(a) @ (COST_CENTRES[0] + pattern)

    truth, lat = launch_bound(unseen), launch_bound(archs) * (1 + 0.01 * rng.standard_normal(5))
    refined = predictor.adapt(archs, lat).predict(unseen)[0]
    prior, scale = predictor.prior, float(predictor.meta["default_scale_ms"])
    args = (prior, features(archs), lat, scale, COST_COLUMNS, predictor.sources, COST_CENTRES)
    plain = posterior_with_costs(*args)
    plain_ms = plain.scale_ms * features(unseen) @ plain.mean
    assert stats.spearmanr(refined, truth)[0] > 0.97 > stats.spearmanr(plain_ms, truth)[0]
    assert np.median(np.abs(refined / truth - 1)) < 0.5 * np.median(np.abs(plain_ms / truth - 1))
    with_it = posterior_with_costs(*args, efficiency=predictor.efficiency)
    np.testing.assert_allclose(with_it.scale_ms * features(unseen) @ with_it.mean, refined)


def test_whole_ms_samples_keep_the_rounding_variance_in_the_noise(predictor):
    archs = np.asarray(SPACE.sample(20, seed=3))
    whole = np.round(3 * _device(archs))  # ~3-5 ms, reported in whole ms
    model = predictor.adapt(archs, whole)
    assert model.posterior.noise * model.posterior.scale_ms**2 == pytest.approx(1 / 12)  # the floor
    assert model.posterior.relative > 0  # the fitted noise, relative to the predicted latency
    assert model.predict(np.asarray(SPACE.sample(50, seed=4)))[1].min() >= np.sqrt(1 / 12)
    fine = predictor.adapt(archs, whole + 0.01 * np.arange(20))  # not all whole: no rounding floor
    assert fine.posterior.noise == 0.0 and fine.posterior.relative > 0


@pytest.mark.parametrize(
    ("arch", "where"),
    [
        ([0] * 21, "21 entries"),
        ("-".join(["k3_e1"] * 21 + ["k7_e9"]), "'k7_e9' at position 21"),
        ([0] * 5 + [9] + [0] * 16, "position 5 holds 9"),
    ],
)
def test_bad_archs_name_what_and_where(predictor, arch, where):
    model = predictor.adapt([], [])
    with pytest.raises(ArchError, match=where):
        model.predict([arch])


def test_predict_without_archs_is_an_error(predictor):
    with pytest.raises(ValueError, match="pass the archs"):
        predictor.adapt([], []).predict()


@pytest.mark.skipif(not (FBNET_DIR / "arch.pt").exists(), reason="shared HELP FBNet data not found")
def test_eval_transfer_fbnet_json_and_dump(tmp_path):
    out = eval_transfer_cli(
        FBNET_DIR, ["1080ti_1", "gold_6240", "pixel3"], ["titan_rtx_32"], samples=[10], trials=2, seed=1,
        json_out=tmp_path / "r.json", dump=tmp_path / "dump", space="fbnet",
    )  # fmt: skip
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["space"] == "fbnet" and saved["samples"] == json.loads(json.dumps(out["samples"]))
    assert saved["samples"]["10"]["per_device"]["titan_rtx_32"]["spearman"] > 0.9
    for name in ("coverage_1sd", "coverage_2sd"):  # the calibration of std_ms, as NB201's JSON has it
        assert 0.5 <= saved["samples"]["10"][f"mean_{name}"] <= 1.0
    assert saved["samples"]["10"]["mean_coverage_1sd"] <= saved["samples"]["10"]["mean_coverage_2sd"]
    run = np.load(tmp_path / "dump" / "titan_rtx_32_k10_t0.npz")
    assert run["pred_ms"].shape == (5000,) and run["samples"].shape == (10,)
    assert run["samples"].min() >= 0 and run["samples"].max() < 5000


@pytest.mark.skipif(not (FBNET_DIR / "arch.pt").exists(), reason="shared HELP FBNet data not found")
def test_transfer_scores_pass_calibrating_archs_to_the_fbnet_predictor(predictor, tmp_path):
    """The reference view adapts the FBNet predictor with ``calibrating`` as given: with R = 10 the spread is set
    by the 10 random archs (``calibration``), and the scored archs are neither sampled nor calibrating."""
    reference = np.asarray(load_reference(FBNET_DIR), dtype=np.int64)[:300]
    lat = load_help(FBNET_DIR, ["titan_rtx_32"], 5000)["titan_rtx_32"][:300]
    view = ReferencePredictor(predictor, reference)
    model = view.adapt(np.arange(15), lat[:15], [False] * 5 + [True] * 10).model
    assert model.calibrating.tolist() == [False] * 5 + [True] * 10
    out = transfer_scores(view, {"titan_rtx_32": lat}, [5], 1, seed=2, calibration=10, dump=tmp_path)
    run = np.load(tmp_path / "titan_rtx_32_k5_t0.npz")
    assert run["calibrating"].shape == (10,) and not set(run["calibrating"]) & set(run["samples"])
    rest = np.setdiff1d(np.arange(300), np.r_[run["samples"], run["calibrating"]])
    shares = coverage(run["pred_ms"][rest], run["std_ms"][rest], lat[rest])
    assert out["5"]["per_device"]["titan_rtx_32"]["coverage_1sd"] == pytest.approx(shares["coverage_1sd"])


@pytest.mark.parametrize(
    "command", [["pretrain", "--out", "x.npz"], ["eval", "transfer", "--train", "a", "--test", "b"]]
)
def test_unknown_space_is_one_cli_line(tmp_path, command):
    from typer.testing import CliRunner

    from latfarm.services.cli import app

    (tmp_path / "latency").mkdir()
    (tmp_path / "latency" / "a.pt").write_bytes(b"")  # a HELP folder's shape: the space is what is refused
    result = CliRunner().invoke(app, [*command, "--data", str(tmp_path), "--space", "darts"])
    assert result.exit_code != 0 and "darts" in result.output and "Traceback" not in result.output
