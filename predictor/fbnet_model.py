"""The FBNet latency predictor: any of the 9^22 archs, by encoding (22 block indices); numpy/scipy only.

Features of an arch (computed on demand): an intercept, the 22 x 9 per-layer block one-hots and the network's
device-agnostic costs (``fbnet_features.COSTS``, each divided by its mean over uniformly random archs). The
cross-device prior covers intercept and one-hots, centred on the source devices' mean head or on one of their own
heads (``blr``); the costs get a broad prior that the target's own samples fit. A cost-only hypothesis (latency =
one cost alone, ``COST_CENTRES``) competes with the sources, so a device of a family the sources lack is predicted
from its costs with 5-10 samples, refined along the directions in which the source devices' block-type efficiencies
differ from their costs (``efficiency_cov``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from latfarm.predictor.blr import planning_cov, posterior_with_costs
from latfarm.predictor.calibration import calibrating_mask
from latfarm.predictor.checkpoint import prior_arrays, read_prior, write_checkpoint
from latfarm.predictor.fbnet_features import COSTS, layer_costs, network_costs, one_hot
from latfarm.predictor.latencies import checked_latencies
from latfarm.predictor.model import CHECKPOINT_FORMAT, DEVICE_STATE_FORMAT, CheckpointMeta, DeviceModel
from latfarm.predictor.prior import Posterior, Prior, fit_prior
from latfarm.predictor.selection import select_by_variance
from latfarm.predictor.spaces import Encoding, get_space
from latfarm.predictor.spaces.fbnet import BLOCKS, NUM_LAYERS

POOL_SIZE = 500
"""Random archs (or dataset positions) samples are chosen from by max prior variance. A small pool keeps the greedy
choice off the extreme archs (the largest networks), where a prior unlike the device fits worst: leave-one-out on
the HELP FBNet devices scores higher with 500 than with all 5,000 or with random samples (phones most)."""
MODEL_REVISION = 4
"""Bumped when adaptation changes (2: source heads as prior centres, Student-t noise; 3: cost-only centres; 4:
block-type efficiency component of the cost-only hypothesis): device states of another version are re-adapted from
their samples."""
PLANNING_POOL = 2000
"""Random archs (seed 0) over which the planning covariance and the efficiency component are computed."""
VARIANT = "cifar100"
"""The input variant whose network costs are the features (HELP measured this one)."""


def cost_scale() -> np.ndarray:
    """Mean of each cost over uniformly random archs (exact: per-layer means plus the fixed part)."""
    table, fixed = layer_costs(VARIANT)
    return table.mean(1).sum(0) + fixed


def base_features(encodings: np.ndarray) -> np.ndarray:
    """[n, 1 + 22 * 9]: intercept and per-layer block one-hots (what the cross-device prior covers)."""
    hot = one_hot(encodings)
    return np.hstack([np.ones((len(hot), 1)), hot])


def features(encodings: np.ndarray) -> np.ndarray:
    """[n, F]: ``base_features`` then the normalised network costs."""
    return np.hstack([base_features(encodings), network_costs(encodings, VARIANT) / cost_scale()])


FEATURE_NAMES: tuple[str, ...] = (
    "intercept",
    *(f"layer{pos}_{name}" for pos in range(NUM_LAYERS) for name in BLOCKS),
    *(f"cost_{name}" for name in COSTS),
)
COST_COLUMNS = np.arange(len(FEATURE_NAMES) - len(COSTS), len(FEATURE_NAMES))
BOUND_BY = ("kernels", "flops", "memory")
"""The costs that alone can carry a device's latency: launch-bound (GPUs at batch 1), compute-bound, memory-bound
(GPUs at large batch); each is one centre of the cost-only hypothesis (``blr``)."""
COST_CENTRES = np.eye(len(FEATURE_NAMES))[[FEATURE_NAMES.index(f"cost_{name}") for name in BOUND_BY]]
"""[3, F]: heads of latency = one normalised cost (mean 1 over random archs, like a source head), nothing else."""


def efficiency_directions() -> np.ndarray:
    """[F, 9 * 3]: per block type and cost of ``BOUND_BY`` (column ``block * 3 + cost``), that cost summed
    over the layers using the block, as a direction over the per-layer one-hots (normalised by ``cost_scale``):
    ``features(enc) @ efficiency_directions()`` are the 27 block-type cost columns of the archs."""
    table, _ = layer_costs(VARIANT)
    which = [COSTS.index(name) for name in BOUND_BY]
    per_layer = table[:, :, which] / cost_scale()[which]  # [22, 9, 3]
    out = np.zeros((len(FEATURE_NAMES), len(BLOCKS), len(which)))
    out[1 : 1 + NUM_LAYERS * len(BLOCKS)] = (per_layer[:, :, None, :] * np.eye(len(BLOCKS))[:, :, None]).reshape(
        NUM_LAYERS * len(BLOCKS), len(BLOCKS), len(which)
    )
    return out.reshape(len(FEATURE_NAMES), -1)


def efficiency_cov(sources: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """[F, F]: the source devices' block-type efficiency deviations as a prior covariance (their second moment, the
    deviation of a cost-only centre being 0). A source head's predictions on ``pool`` rows [n, F] are fitted by an
    intercept and the costs (its cost-only fit); what that leaves, by an intercept and the block-type columns
    (``efficiency_directions``): the 27 weights are its deviation ``d``. Returns the mean of ``E d d^T E^T`` over
    the heads ``sources`` [D, F] (``E`` the directions), in normalised latency units like the heads."""
    directions = efficiency_directions()
    ones = np.ones((len(pool), 1))
    costs = np.hstack([ones, pool[:, COST_COLUMNS]])
    blocks = np.hstack([ones, pool @ directions])
    y = pool @ np.asarray(sources, dtype=np.float64).T  # [n, D]
    left = y - costs @ np.linalg.lstsq(costs, y, rcond=None)[0]
    deviations = directions @ np.linalg.lstsq(blocks, left, rcond=None)[0][1:]  # [F, D]
    return deviations @ deviations.T / len(sources)


def fit_fbnet_prior(encodings: np.ndarray, latencies: dict[str, np.ndarray]) -> tuple[Prior, np.ndarray]:
    """The prior from source devices (ms by position of ``encodings`` [n, 22], NaN = not measured) and their heads
    [devices, F] (sorted by name; zero cost weights), the prior's candidate centres (``blr``)."""
    base, heads = fit_prior(base_features(encodings), latencies)
    size, costs = len(base.mean), len(COSTS)
    cov = np.zeros((size + costs, size + costs))
    cov[:size, :size] = base.cov
    cov[size:, size:] = np.eye(costs) * 1e-4
    mean, spread = np.concatenate([base.mean, np.zeros(costs)]), np.concatenate([base.spread, np.zeros(costs)])
    sources = np.stack([np.concatenate([heads[name], np.zeros(costs)]) for name in sorted(heads)])
    return Prior(mean, cov, spread, base.noise_grid, base.noise_log_prior), sources


class FBNetPredictor(CheckpointMeta):
    """A pretrained FBNet predictor: adapts to a device from (arch, ms) samples, predicts any arch."""

    def __init__(self, prior: Prior, sources: np.ndarray, meta: dict[str, Any]) -> None:
        """From the prior over ``FEATURE_NAMES``, the source devices' heads [devices, F] and the checkpoint
        metadata; ``ValueError`` when their sizes differ."""
        if len(prior.mean) != len(FEATURE_NAMES) or np.shape(sources)[1:] != (len(FEATURE_NAMES),):
            raise ValueError(
                f"checkpoint mismatch: {len(FEATURE_NAMES)} features but a prior of {len(prior.mean)} and source "
                f"heads of shape {np.shape(sources)}"
            )
        self.prior = prior
        self.sources = np.asarray(sources, dtype=np.float64)
        self.meta = meta
        self.space = get_space("fbnet")

    @classmethod
    def from_npz(cls, npz) -> FBNetPredictor:
        """From an opened checkpoint (``Predictor.load`` dispatches here on ``space: fbnet``)."""
        meta = json.loads(str(npz["__meta__"]))
        prior = read_prior(npz)
        if "source_heads" not in npz:
            raise ValueError(
                f"checkpoint {meta.get('version')} has no source_heads: re-run latfarm pretrain --space fbnet"
            )
        return cls(prior, npz["source_heads"], meta)

    def save(self, path: Path, metrics: dict | None = None) -> Path:
        """Write the checkpoint (.npz with JSON metadata inside) and a readable ``.json`` sidecar."""
        if metrics is not None:
            self.meta["metrics"] = metrics
        return write_checkpoint(
            path,
            self.meta,
            {
                **prior_arrays(self.prior),
                "source_heads": self.sources,
            },
        )

    def encodings(self, archs: Sequence[str | Sequence[int]] | np.ndarray) -> np.ndarray:
        """Archs (strings or 22-index lists) as an [n, 22] int array; ``ArchError`` naming the bad one."""
        if isinstance(archs, np.ndarray) and archs.ndim == 2 and np.issubdtype(archs.dtype, np.integer):
            rows = [self.space.check_indices(list(row)) for row in archs.tolist()]
        else:
            rows = [self.space.parse(a) for a in archs]
        return np.asarray(rows, dtype=np.int64).reshape(-1, NUM_LAYERS)

    def rows(self, archs) -> np.ndarray:
        """Features of the given archs (``None``, all archs, is an error: the space is not enumerated)."""
        if archs is None:
            raise ValueError("fbnet is too large to predict every arch: pass the archs to predict")
        return features(self.encodings(archs))

    @cached_property
    def _pool(self) -> np.ndarray:
        return features(np.asarray(self.space.sample(PLANNING_POOL, seed=0)))

    @cached_property
    def _planning_cov(self) -> np.ndarray:
        return planning_cov(self.prior, self._pool, COST_COLUMNS)

    @cached_property
    def efficiency(self) -> np.ndarray:
        """[F, F]: the cost-only hypothesis's block-type efficiency component, from the source heads."""
        return efficiency_cov(self.sources, self._pool)

    def select_rows(self, phi: np.ndarray, k: int, *, seed: int = 0, exclude=()) -> list[int]:
        """K row positions of candidate features ``phi`` to measure: greedy max prior variance over a seeded random
        pool of ``POOL_SIZE`` rows."""
        noise = self.prior.typical_noise
        return select_by_variance(phi, self._planning_cov, noise, k, seed=seed, exclude=exclude, pool_size=POOL_SIZE)

    def select_samples(self, k: int, *, seed: int = 0, exclude: Sequence = ()) -> list[Encoding]:
        """K archs to measure on a new device, from seeded random archs, none of ``exclude``."""
        skip = {self.space.parse(a) for a in exclude}
        pool = [a for a in dict.fromkeys(self.space.sample(POOL_SIZE + len(skip), seed=seed)) if a not in skip]
        rows = self.select_rows(features(np.asarray(pool)), k, seed=seed)
        return [pool[r] for r in rows]

    def adapt(
        self, archs, latencies_ms: Sequence[float] | np.ndarray, calibrating: Sequence[bool] | None = None
    ) -> FBNetDeviceModel:
        """A device model from measured (arch, ms) pairs; no samples = the unadapted prior at a typical scale.
        ``calibrating`` [K]: which samples are random archs measured to calibrate the spread (``calibration``)."""
        enc = self.encodings(archs) if len(archs) else np.zeros((0, NUM_LAYERS), dtype=np.int64)
        lat = checked_latencies(np.asarray(latencies_ms, dtype=np.float64).reshape(-1), "adapt")
        if len(lat) != len(enc):
            raise ValueError(f"{len(enc)} archs but {len(lat)} latencies")
        mask = calibrating_mask(calibrating, len(lat))
        scale = float(self.meta["default_scale_ms"])
        phi = features(enc)
        post = posterior_with_costs(
            self.prior, phi, lat, scale, COST_COLUMNS, self.sources, COST_CENTRES, mask, self.efficiency
        )
        return FBNetDeviceModel(self, post, enc, lat, calibrating=mask)


class FBNetDeviceModel(DeviceModel):
    """One device's posterior over FBNet archs; archs are strings or 22-index lists (any of the 9^22)."""

    predictor: FBNetPredictor

    def rank(self, archs) -> list[Encoding]:  # type: ignore[override]
        """The given archs' encodings, fastest first."""
        enc = self.predictor.encodings(archs)
        mean, _ = self.predict(enc)
        return [tuple(int(v) for v in enc[i]) for i in np.argsort(mean, kind="stable")]

    def to_state(self) -> dict:
        """JSON-serialisable state; samples as encodings."""
        return {
            "format": DEVICE_STATE_FORMAT,
            "space": "fbnet",
            "predictor_version": self.predictor.version,
            "archs": [[int(v) for v in row] for row in self.indices],
            "latencies_ms": [float(x) for x in self.latencies_ms],
            **self.calibrating_state(),
            **self.posterior.to_state(),
        }

    @classmethod
    def from_state(cls, predictor, state: dict) -> FBNetDeviceModel:
        """Rebuild from ``to_state``; a state from another predictor version is re-adapted from its samples."""
        if state.get("format") != DEVICE_STATE_FORMAT or state.get("space") != "fbnet":
            raise ValueError(f"not an fbnet device model state (space {state.get('space')!r})")
        if state.get("predictor_version") != predictor.version:
            return predictor.adapt(state["archs"], state["latencies_ms"], state.get("calibrating"))
        post = Posterior.from_state(state)
        enc = predictor.encodings(state["archs"]) if state["archs"] else np.zeros((0, NUM_LAYERS), dtype=np.int64)
        lat = np.asarray(state["latencies_ms"], dtype=np.float64)
        return cls(predictor, post, enc, lat, calibrating=state.get("calibrating"))


def pretrain_fbnet(encodings: np.ndarray, latencies: dict[str, np.ndarray], *, seed: int = 0) -> FBNetPredictor:
    """Pretrain on source devices (ms by position of ``encodings``); no learned part, so ``seed`` is recorded only."""
    import datetime as dt

    from latfarm.predictor.help_data import data_hash

    if len(latencies) < 2:
        raise ValueError(f"pretraining needs at least 2 devices, got {len(latencies)}")
    prior, sources = fit_fbnet_prior(np.asarray(encodings), latencies)
    digest = data_hash(latencies)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "space": "fbnet",
        "version": f"fbnet-blr-{MODEL_REVISION}-{digest[:8]}",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "devices": sorted(latencies),
        "data_hash": digest,
        "seed": seed,
        "variant": VARIANT,
        "features": list(FEATURE_NAMES),
        "default_scale_ms": float(np.median([np.nanmean(v) for v in latencies.values()])),
        "metrics": {},
    }
    return FBNetPredictor(prior, sources, meta)
