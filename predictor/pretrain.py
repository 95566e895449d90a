"""Multi-device pretraining: additive op-cost heads per device, a GCN on what they miss, and the cross-device prior."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latfarm.predictor.features import FEATURE_NAMES, all_features
from latfarm.predictor.help_data import data_hash, load_help
from latfarm.predictor.latencies import checked_latencies
from latfarm.predictor.model import CHECKPOINT_FORMAT, Predictor
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.nb201_costs import COST_NAMES, with_costs
from latfarm.predictor.prior import fit_prior, ridge_head
from latfarm.predictor.scores import score

DEFAULT_EPOCHS = 12
MODEL_REVISION = 5
"""Bumped when pretraining changes what a checkpoint holds: part of versions and cache keys."""
MIN_MEASURED = 50


def _check(latencies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, lat in sorted(latencies.items()):
        arr = checked_latencies(np.asarray(lat, dtype=np.float64).reshape(-1), f"device {name!r}", allow_nan=True)
        if arr.shape != (NUM_ARCHS,):
            raise ValueError(f"device {name!r}: expected {NUM_ARCHS} latencies by NB201 index, got {arr.shape[0]}")
        ok = ~np.isnan(arr)
        if ok.sum() >= MIN_MEASURED:
            out[name] = arr
    if len(out) < 2:
        raise ValueError(f"pretraining needs at least 2 devices with {MIN_MEASURED}+ measured archs, got {len(out)}")
    return out


def pretrain(
    latencies: dict[str, np.ndarray], *, seed: int = 0, progress: bool = False, epochs: int = DEFAULT_EPOCHS
) -> Predictor:
    """Pretrain on every given device (ms by official NB201 index, NaN = not measured; devices with fewer than 50
    measured archs are skipped). ``epochs=0`` skips the GCN (additive features only)."""
    lat = _check(latencies)
    x = all_features()
    normalised = [y / np.nanmean(y) for y in lat.values()]
    resid = np.stack([y - x @ ridge_head(x, y) for y in normalised], 1)  # what op counts miss, per device
    gcn_state: dict[str, np.ndarray] = {}
    emb = np.zeros((NUM_ARCHS, 0))
    if epochs > 0:
        import torch

        from latfarm.predictor.gcn import embed_all, train_gcn

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small batched matmuls: extra threads only contend
        try:
            model = _train_with_progress(train_gcn, resid, epochs, seed, progress)
            raw = embed_all(model)
        finally:
            torch.set_num_threads(threads)
        emb = (raw - raw.mean(0)) / np.maximum(raw.std(0), 1e-9)
        gcn_state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    base, heads = fit_prior(np.hstack([x, emb]), lat)
    sources = np.stack([np.concatenate([heads[name], np.zeros(len(COST_NAMES))]) for name in lat])
    digest = data_hash(lat)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": f"gcn-blr-{MODEL_REVISION}.{epochs}-{digest[:8]}-s{seed}",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "devices": list(lat),
        "data_hash": digest,
        "seed": seed,
        "epochs": epochs,
        "features": [*FEATURE_NAMES, *(f"gcn_{i}" for i in range(emb.shape[1])), *COST_NAMES],
        "default_scale_ms": float(np.median([np.nanmean(v) for v in lat.values()])),
        "metrics": {},
    }
    return Predictor(with_costs(base), emb, meta, gcn_state, sources)


def _train_with_progress(train_gcn, resid, epochs, seed, progress):
    if not progress:
        return train_gcn(resid, epochs=epochs, seed=seed)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("pretraining GCN", total=epochs)
        return train_gcn(resid, epochs=epochs, seed=seed, progress=lambda: bar.advance(task))


def fit_metrics(predictor: Predictor, latencies: dict[str, np.ndarray], samples=(5, 10, 20), seed: int = 0) -> dict:
    """Scores of K-sample adaptation on the training devices themselves (a sanity check, not a transfer score)."""
    out: dict = {}
    for k in samples:
        per = {}
        for name, lat in latencies.items():
            idx = predictor.select_samples(k, seed=seed, exclude=np.flatnonzero(np.isnan(lat)))
            mean, _ = predictor.adapt(idx, lat[idx]).predict()
            rest = np.setdiff1d(np.flatnonzero(~np.isnan(lat)), idx)
            per[name] = score(mean[rest], lat[rest])
        out[str(k)] = {
            f"mean_{m}": float(np.mean([v[m] for v in per.values()])) for m in ("spearman", "kendall", "acc10")
        }
    return out


def pretrain_cli(data: Path, devices: Sequence[str] | None, out: Path, seed: int = 0, space: str = "nb201") -> Path:
    """`latfarm pretrain`: pretrain on a HELP-layout folder of ``space``, score the fit, write a checkpoint."""
    from rich.console import Console

    console = Console()
    if space == "fbnet":
        from latfarm.predictor.fbnet_model import pretrain_fbnet
        from latfarm.predictor.spaces.fbnet import load_reference

        reference = np.asarray(load_reference(data))
        lat = load_help(data, devices, len(reference))
        console.print(f"pretraining the fbnet predictor on {len(lat)} devices: {', '.join(lat)}")
        fb = pretrain_fbnet(reference, lat, seed=seed)
        path = fb.save(out)
        console.print(f"wrote {path} (version {fb.version})")
        return path
    if space != "nb201":
        raise ValueError(f"no predictor for search space {space!r}; use nb201 or fbnet")
    lat = load_help(data, devices)
    console.print(f"pretraining on {len(lat)} devices: {', '.join(lat)}")
    predictor = pretrain(lat, seed=seed, progress=True)
    path = predictor.save(out, metrics={"train_devices_fit": fit_metrics(predictor, lat, seed=seed)})
    console.print(f"wrote {path} (version {predictor.version})")
    return path
