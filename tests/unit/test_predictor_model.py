"""Predictor API: checkpoints, adaptation, sample selection, uncertainty, pairwise ranking, device state."""

import json
import os

import numpy as np
import pytest

from latfarm.predictor import nb201_costs, nb201_structure
from latfarm.predictor.blr import COST_MASS
from latfarm.predictor.help_data import load_help
from latfarm.predictor.model import DeviceModel, Predictor
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.nb201_costs import cost_hypothesis
from latfarm.predictor.nb201_structure import structure_hypothesis
from latfarm.predictor.pretrain import pretrain
from latfarm.predictor.prior import posterior
from latfarm.predictor.scores import score
from latfarm.predictor.selection import select_random

TRAIN = ["1080ti_1", "silver_4114", "samsung_a50"]
HELD_OUT = "titanx_256"


@pytest.fixture(scope="module")
def latencies(help_dir):
    return load_help(help_dir, [*TRAIN, HELD_OUT])


@pytest.fixture(scope="module")
def small(latencies):
    return pretrain({d: latencies[d] for d in TRAIN}, seed=0, epochs=1)


def test_checkpoint_round_trip(small, latencies, tmp_path):
    path = small.save(tmp_path / "ck.npz", metrics={"loo": {"20": {"mean_spearman": 0.5}}})
    assert path.with_suffix(".json").exists()
    loaded = Predictor.load(path)
    assert loaded.version == small.version and loaded.metrics == {"loo": {"20": {"mean_spearman": 0.5}}}
    assert loaded.devices == sorted(TRAIN)
    idx = small.select_samples(10, seed=3)
    assert loaded.select_samples(10, seed=3) == idx
    lat = latencies[HELD_OUT]
    for a, b in zip(small.adapt(idx, lat[idx]).predict(), loaded.adapt(idx, lat[idx]).predict(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_adaptation_beats_unadapted_model(small, latencies):
    lat = latencies[HELD_OUT]
    idx = small.select_samples(10, seed=0)
    rest = np.setdiff1d(np.arange(NUM_ARCHS), idx)
    before = score(small.adapt([], []).predict()[0][rest], lat[rest])
    after = score(small.adapt(idx, lat[idx]).predict()[0][rest], lat[rest])
    assert after["acc10"] > before["acc10"] + 0.2
    assert after["spearman"] > before["spearman"] and after["spearman"] > 0.95


def test_selection_distinct_valid_seeded_and_not_random(small):
    picks = small.select_samples(20, seed=1, exclude=[0, 1, 2])
    assert len(set(picks)) == 20 and all(0 <= i < NUM_ARCHS for i in picks)
    assert not {0, 1, 2} & set(picks)
    assert picks == small.select_samples(20, seed=1, exclude=[0, 1, 2])
    assert picks != small.select_samples(20, seed=2, exclude=[0, 1, 2])
    assert len(set(picks) & set(select_random(NUM_ARCHS, 20, seed=1))) < 5
    # uncertainty sampling: the picks leave less predictive variance over all archs than random picks do
    cov, noise, phi = small.prior.planning_cov(), small.prior.typical_noise, small.phi
    left = []
    for chosen in (picks, select_random(NUM_ARCHS, 20, seed=1)):
        post = cov - cov @ phi[chosen].T @ np.linalg.solve(
            phi[chosen] @ cov @ phi[chosen].T + noise * np.eye(20), phi[chosen] @ cov
        )
        left.append(((phi @ post) * phi).sum(1).mean())
    assert left[0] < left[1]
    with pytest.raises(ValueError, match="cannot select"):
        small.select_samples(NUM_ARCHS + 1)


def test_predict_uncertainty_and_pairwise_ranking(small, latencies):
    lat = latencies[HELD_OUT]
    idx = small.select_samples(20, seed=0)
    model = small.adapt(idx, lat[idx])
    mean, std = model.predict()
    assert mean.shape == std.shape == (NUM_ARCHS,) and np.all(std > 0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, NUM_ARCHS, 200), rng.integers(0, NUM_ARCHS, 200)
    p = model.prob_faster(a, b)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p + model.prob_faster(b, a), 1.0, atol=1e-9)
    np.testing.assert_array_equal(p > 0.5, mean[a] < mean[b])
    agree = np.mean((p > 0.5) == (lat[a] < lat[b]))
    assert agree > 0.9
    cands = [int(i) for i in rng.choice(NUM_ARCHS, 30, replace=False)]
    ranked = model.rank(cands)
    assert sorted(ranked) == sorted(cands)
    assert np.all(np.diff(mean[ranked]) >= 0)


def test_device_state_round_trip(small, latencies):
    lat = latencies[HELD_OUT]
    idx = small.select_samples(10, seed=0)
    model = small.adapt(idx, lat[idx])
    state = json.loads(json.dumps(model.to_state()))
    assert len(json.dumps(state)) < 1_000_000
    again = DeviceModel.from_state(small, state)
    for a, b in zip(again.predict(), model.predict(), strict=True):
        np.testing.assert_allclose(a, b)
    stale = dict(state, predictor_version="older", mean=[0.0] * len(state["mean"]))
    np.testing.assert_allclose(DeviceModel.from_state(small, stale).predict()[0], model.predict()[0])
    # a state fitted under other network costs or structure columns (same checkpoint) is re-adapted too
    for suffix, older in ((f".c{nb201_costs.COSTS_REVISION}", ".c1"), (f".s{nb201_structure.STRUCTURE_REVISION}", "")):
        other = small.version.replace(suffix, older)
        assert other != small.version
        stale = dict(state, predictor_version=other, mean=[0.0] * len(small.checkpoint_prior.mean))
        np.testing.assert_allclose(DeviceModel.from_state(small, stale).predict()[0], model.predict()[0])


def test_a_state_stored_without_relative_noise_loads_with_uniform_noise(small, latencies):
    lat = latencies[HELD_OUT]
    idx = small.select_samples(10, seed=0)
    state = json.loads(json.dumps(small.adapt(idx, lat[idx]).to_state()))
    assert state["relative"] > 0
    old = {k: v for k, v in state.items() if k not in ("relative", "level", "std_factor")}  # stored before all three
    loaded = DeviceModel.from_state(small, old)
    mean, std = loaded.predict()
    np.testing.assert_allclose(mean, DeviceModel.from_state(small, state).predict()[0])
    post = loaded.posterior
    head = ((small.phi @ post.cov) * small.phi).sum(1)
    np.testing.assert_allclose(std, post.scale_ms * np.sqrt(head + state["noise"]))


def _relative(pred: np.ndarray) -> np.ndarray:
    return pred / pred.mean()


def test_a_device_equal_to_a_source_is_centred_on_that_sources_head(small, latencies):
    name = TRAIN[1]
    lat = latencies[name]
    idx = small.select_samples(5, seed=0)
    without = Predictor(
        small.checkpoint_prior, small.embeddings, small.meta, small.gcn_state
    )  # a checkpoint of revision <= 3
    models = {"sources": small.adapt(idx, lat[idx]), "prior": without.adapt(idx, lat[idx])}
    heads = {d: _relative(small.phi @ w) for d, w in zip(small.devices, small.sources, strict=True)}
    off = {}
    for key, model in models.items():
        pred = _relative(small.phi @ model.posterior.mean)
        off[key] = {d: float(np.sqrt(np.mean((pred - h) ** 2))) for d, h in heads.items()}
    assert min(off["sources"], key=off["sources"].get) == name
    assert off["sources"][name] < off["prior"][name]
    # its spread still covers the errors (whether it is narrower than the prior's alone depends on the draw: a noisy
    # server CPU among three sources, K=5-10)
    rest = np.setdiff1d(np.arange(NUM_ARCHS), idx)
    mean, std = models["sources"].predict(rest)
    assert np.mean(np.abs(mean - lat[rest]) <= 2 * std) > 0.9


def test_a_checkpoint_without_source_heads_adapts_with_the_prior_and_the_costs_only(small, latencies, tmp_path):
    old = Predictor(small.checkpoint_prior, small.embeddings, small.meta, small.gcn_state).save(tmp_path / "r3.npz")
    with np.load(old) as npz:
        assert "source_heads" not in npz.files
    loaded = Predictor.load(old)
    assert loaded.sources is None
    lat = latencies[HELD_OUT]
    idx = small.select_samples(10, seed=0)
    phi_s = small.phi[idx]
    structure = structure_hypothesis(small.prior, phi_s, small.structure_columns)
    cost = cost_hypothesis(small.prior, phi_s, small.cost_columns, (1 - structure.mass) * COST_MASS)
    alternatives = [structure, cost]
    expected = posterior(small.prior, phi_s, lat[idx], small.meta["default_scale_ms"], alternatives=alternatives)
    got = loaded.adapt(idx, lat[idx]).posterior
    np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got.cov, expected.cov, rtol=1e-5, atol=1e-9)
    size = len(small.checkpoint_prior.mean)
    with np.load(small.save(tmp_path / "r4.npz")) as npz:  # as the checkpoint stores them: no structure columns
        np.testing.assert_allclose(npz["source_heads"], small.sources[:, :size])
        np.testing.assert_allclose(npz["prior_mean"], small.checkpoint_prior.mean)
    assert not small.sources[:, size:].any()
    with pytest.raises(ValueError, match="source heads"):
        Predictor(small.checkpoint_prior, small.embeddings, small.meta, small.gcn_state, small.sources[:, : size - 1])


def test_bad_input_is_rejected(small):
    with pytest.raises(ValueError, match="indices but"):
        small.adapt([1, 2], [3.0])
    with pytest.raises(ValueError, match="entry 1 must be between 0.0001 ms and 10000000 ms, got -1 ms"):
        small.adapt([1, 2], [3.0, -1.0])
    with pytest.raises(ValueError, match="0..15624"):
        small.adapt([NUM_ARCHS], [1.0])
    with pytest.raises(ValueError, match="at least 2 devices"):
        pretrain({"one": np.ones(NUM_ARCHS)})


def test_pretrain_accepts_partial_measurements(latencies):
    rng = np.random.default_rng(0)
    partial = {}
    for d in TRAIN:
        lat = latencies[d].copy()
        lat[rng.random(NUM_ARCHS) < 0.5] = np.nan
        partial[d] = lat
    predictor = pretrain(partial, epochs=0)
    lat = latencies[HELD_OUT]
    idx = predictor.select_samples(20, seed=0)
    rest = np.setdiff1d(np.arange(NUM_ARCHS), idx)
    assert score(predictor.adapt(idx, lat[idx]).predict()[0][rest], lat[rest])["spearman"] > 0.95


def test_shipped_checkpoint_predicts_every_arch():
    predictor = Predictor.load()
    assert predictor.version and len(predictor.devices) == 21
    idx = predictor.select_samples(5, seed=0)
    mean, std = predictor.adapt(idx, np.linspace(5, 9, 5)).predict()
    assert mean.shape == std.shape == (NUM_ARCHS,)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    from latfarm.predictor.checkpoint import write_checkpoint

    class Interrupting:
        def __array__(self, dtype=None, copy=None):
            raise KeyboardInterrupt  # Ctrl-C while numpy writes the archive

    path = tmp_path / "ckpt.npz"
    write_checkpoint(path, {"version": "old"}, {"w": np.arange(3.0)})
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, {"version": "new"}, {"w": np.arange(3.0), "x": Interrupting()})  # type: ignore[dict-item]
    with np.load(path) as npz:
        assert json.loads(str(npz["__meta__"]))["version"] == "old"
        assert npz["w"].tolist() == [0.0, 1.0, 2.0]
    assert json.loads(path.with_suffix(".json").read_text())["version"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.npz"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    for written in tmp_path.iterdir():  # as a plain open gives them, not the temporary file's 0o600
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask
