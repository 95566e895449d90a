"""Public predictor API: load a checkpoint, choose archs to measure, adapt to a device, predict and rank.

The device-independent part (additive op features, GCN embeddings, network costs and the structure block's
critical-path columns of all 15,625 archs) is computed once at load; a device model is a Gaussian posterior over a
~50-dim head and the op costs its structure columns are computed under (a few ms over all archs), so predicting every
arch is one small matmul.
The binary relation (which arch is faster) is derived from the predictive distribution: P(lat_a < lat_b) under
the posterior, both predictions' noise included. Loading and serving need numpy/scipy only, not torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from latfarm.predictor.blr import COST_MASS, SOURCE_MASS
from latfarm.predictor.calibration import calibrating_mask
from latfarm.predictor.checkpoint import prior_arrays, read_prior, write_checkpoint
from latfarm.predictor.features import all_features, zero_fed_as_dead
from latfarm.predictor.latencies import checked_latencies
from latfarm.predictor.mixture import Hypothesis
from latfarm.predictor.nb201 import NUM_ARCHS
from latfarm.predictor.nb201_costs import COST_NAMES, COSTS_REVISION, all_costs, cost_hypothesis
from latfarm.predictor.nb201_structure import (
    PATH_COLUMNS,
    STRUCTURE_REVISION,
    all_structure,
    cost_vector,
    device_columns,
    device_op_costs,
    op_cost_map,
    structure_hypothesis,
    with_structure,
)
from latfarm.predictor.prior import Posterior, Prior, posterior, source_hypothesis
from latfarm.predictor.selection import select_by_variance
from latfarm.predictor.spaces import SearchSpace, get_space

CHECKPOINT_FORMAT = "latfarm-predictor/1"
DEVICE_STATE_FORMAT = "latfarm-device-model/1"
SHIPPED_CHECKPOINT = "predictor-v1.npz"
SHIPPED_CHECKPOINTS = {"nb201": SHIPPED_CHECKPOINT, "fbnet": "fbnet-v1.npz"}
"""The checkpoint shipped in the package for each space; a checkpoint's metadata names its space (default nb201)."""


class CheckpointMeta:
    """What every space's predictor tells of its checkpoint, from its metadata ``meta``."""

    meta: dict[str, Any]

    @property
    def version(self) -> str:
        """The checkpoint's version (also part of device-model states and cache keys)."""
        return str(self.meta["version"])

    @property
    def metrics(self) -> dict:
        """Scores stored with the checkpoint (e.g. fit on the training devices)."""
        return dict(self.meta.get("metrics", {}))

    @property
    def devices(self) -> list[str]:
        """The devices it was pretrained on."""
        return list(self.meta.get("devices", []))


class Predictor(CheckpointMeta):
    """A pretrained latency predictor: cross-device prior + arch features; adapts to a device in milliseconds."""

    def __init__(
        self,
        prior: Prior,
        embeddings: np.ndarray,
        meta: dict[str, Any],
        gcn_state: dict[str, np.ndarray],
        sources: np.ndarray | None = None,
    ):
        """From the checkpoint's prior over F features (op features + E + costs), GCN embeddings [15625, E], the
        checkpoint metadata, the GCN weights and the source devices' heads [D, F] (None: adaptation weighs no source
        centre, checkpoints before revision 4); ``ValueError`` when they do not fit together. The structure columns
        (``nb201_structure``) follow the F features in ``phi``, ``prior`` and ``sources`` with weight 0
        (``with_structure``); ``checkpoint_prior`` is the prior as stored."""
        self.checkpoint_prior = prior
        self.embeddings = np.asarray(embeddings, dtype=np.float32).astype(np.float64)  # as stored
        self.meta = meta
        self.gcn_state = gcn_state
        base = np.hstack([all_features(), self.embeddings, all_costs()])  # [15625, F]
        size = base.shape[1]
        if size != len(prior.mean):
            raise ValueError(f"checkpoint mismatch: {size} features but a prior of {len(prior.mean)}")
        if sources is not None and np.shape(sources)[1:] != prior.mean.shape:
            raise ValueError(f"checkpoint mismatch: source heads {np.shape(sources)} for {len(prior.mean)} features")
        self.cost_columns = np.arange(size - len(COST_NAMES), size)
        self.structure_columns = np.arange(size, size + len(PATH_COLUMNS))
        self.prior = with_structure(prior)
        self.sources = (
            None if sources is None else np.pad(np.asarray(sources, dtype=np.float64), [(0, 0), (0, len(PATH_COLUMNS))])
        )
        self.phi = np.hstack([base, all_structure()])  # [15625, F + structure]
        self.planning_phi = zero_fed_as_dead(self.phi)
        self.cost_map = op_cost_map(self.phi)  # [op types, F + structure]: a head -> the device's op costs

    # --- checkpoints -------------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """The checkpoint's version and the revisions of the columns its features end with (the network costs,
        ``nb201_costs.COSTS_REVISION``, and the structure columns, ``nb201_structure.STRUCTURE_REVISION``): device
        states and prediction tables of another version are rebuilt."""
        return f"{self.meta['version']}.c{COSTS_REVISION}.s{STRUCTURE_REVISION}"

    @property
    def space(self) -> SearchSpace:
        """The search space it predicts (NB201: archs are official indices 0..15624)."""
        return get_space("nb201")

    @classmethod
    def load(cls, path: Path | None = None, *, space: str = "nb201") -> Any:
        """Load a checkpoint file, of whichever space its metadata names; None = the checkpoint shipped for
        ``space`` (``UnknownSpace`` for an unregistered one, ``ValueError`` for one without a checkpoint)."""
        if path is None:
            get_space(space)
            if space not in SHIPPED_CHECKPOINTS:
                raise ValueError(f"no shipped predictor for space {space!r}; shipped: {sorted(SHIPPED_CHECKPOINTS)}")
            with resources.files("latfarm.predictor.data").joinpath(SHIPPED_CHECKPOINTS[space]).open("rb") as fh:
                return cls._from_npz(np.load(fh, allow_pickle=False))
        with np.load(Path(path), allow_pickle=False) as npz:
            return cls._from_npz(npz)

    @classmethod
    def _from_npz(cls, npz) -> Any:
        meta = json.loads(str(npz["__meta__"]))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a latfarm predictor checkpoint (format {meta.get('format')!r})")
        if meta.get("space", "nb201") == "fbnet":
            from latfarm.predictor.fbnet_model import FBNetPredictor

            return FBNetPredictor.from_npz(npz)
        prior = read_prior(npz)
        gcn = {k.removeprefix("gcn/"): npz[k] for k in npz.files if k.startswith("gcn/")}
        sources = npz["source_heads"] if "source_heads" in npz.files else None
        return cls(prior, npz["embeddings"], meta, gcn, sources)

    def save(self, path: Path, metrics: dict | None = None) -> Path:
        """Write the checkpoint (.npz with JSON metadata inside) and a readable ``.json`` sidecar of the metadata."""
        if metrics is not None:
            self.meta["metrics"] = metrics
        arrays = {f"gcn/{k}": v for k, v in self.gcn_state.items()}
        if self.sources is not None:
            arrays["source_heads"] = self.sources[:, : len(self.checkpoint_prior.mean)]
        return write_checkpoint(
            path,
            self.meta,
            {
                **prior_arrays(self.checkpoint_prior),
                "embeddings": self.embeddings.astype(np.float32),
                **arrays,
            },
        )

    def rows(self, indices, columns: np.ndarray | None = None) -> np.ndarray:
        """Features of the given NB201 indices (None = all 15,625 by official index), with ``columns`` [15625, 2] of
        all archs as their structure columns (a device's ``nb201_structure.device_columns``; None: ``PATH_COLUMNS``)."""
        phi = self.phi if indices is None else self.phi[_check_indices(indices)]
        if columns is None:
            return phi
        phi = phi.copy()
        phi[:, self.structure_columns] = columns if indices is None else columns[_check_indices(indices)]
        return phi

    # --- few-shot transfer ---------------------------------------------------------------------------------
    def select_samples(self, k: int, *, seed: int = 0, exclude: Sequence[int] | np.ndarray = ()) -> list[int]:
        """K NB201 indices to measure on a new device: greedy max prior variance over a seeded random pool, zero-fed
        ops counted as dead (``features.zero_fed_as_dead``)."""
        prior = self.prior
        return select_by_variance(
            self.planning_phi, prior.planning_cov(), prior.typical_noise, k, seed=seed, exclude=exclude
        )

    def adapt(
        self,
        indices: Sequence[int] | np.ndarray,
        latencies_ms: Sequence[float] | np.ndarray,
        calibrating: Sequence[bool] | np.ndarray | None = None,
    ) -> DeviceModel:
        """A device model from measured (index, ms) pairs; no samples = the unadapted prior at a typical scale.
        ``calibrating`` [K]: which samples are random archs measured to calibrate the spread (fitted all the same;
        ``calibration``). Two passes: the first with the ``PATH_COLUMNS``, whose posterior mean gives the device's op
        costs (``nb201_structure.device_op_costs``), the second with the structure columns under those costs (the
        model's ``op_costs``)."""
        idx = _check_indices(indices)
        lat = checked_latencies(np.asarray(latencies_ms, dtype=np.float64).reshape(-1), "adapt")
        if len(lat) != len(idx):
            raise ValueError(f"{len(idx)} indices but {len(lat)} latencies")
        mask = calibrating_mask(calibrating, len(idx))
        phi_s = self.phi[idx]
        scale = float(self.meta["default_scale_ms"])
        post = posterior(self.prior, phi_s, lat, scale, alternatives=self._alternatives(phi_s), calibrating=mask)
        if not len(idx):
            return DeviceModel(self, post, idx, lat)
        costs = device_op_costs(self.cost_map, post.mean)
        phi_s = self.rows(idx, device_columns(costs))
        post = posterior(self.prior, phi_s, lat, scale, alternatives=self._alternatives(phi_s), calibrating=mask)
        return DeviceModel(self, post, idx, lat, costs, mask)

    def _alternatives(self, phi_s: np.ndarray) -> list[Hypothesis]:
        """The hypotheses that compete with the cross-device prior for samples ``phi_s`` [K, F]: the structure one
        (``nb201_structure.STRUCTURE_MASS``) and, sharing the rest as without it, the cost-only one and one centred
        on each source head."""
        if not len(phi_s):
            return []
        structure = structure_hypothesis(self.prior, phi_s, self.structure_columns)
        rest = 1 - structure.mass
        alternatives = [structure, cost_hypothesis(self.prior, phi_s, self.cost_columns, rest * COST_MASS)]
        if self.sources is not None:
            alternatives.append(source_hypothesis(self.prior, self.sources, rest * SOURCE_MASS * (1 - COST_MASS)))
        return alternatives


class DeviceModel:
    """One device's posterior: predictions with spread, pairwise faster-probabilities, rankings."""

    def __init__(
        self,
        predictor: Any,
        post: Posterior,
        indices: np.ndarray,
        latencies_ms: np.ndarray,
        op_costs: np.ndarray | Sequence[float] | None = None,
        calibrating: np.ndarray | None = None,
    ):
        """The posterior of ``predictor``'s head given measured archs ``indices`` [K] (NB201: official indices;
        FBNet: encodings [K, 22]) and ``latencies_ms`` [K]; ``predictor.rows(archs)`` gives their features, with NB201's
        structure columns under the device's ``op_costs`` [op types] when given (``structure``, computed here once);
        ``calibrating`` [K]: the samples that calibrated its spread (None: none)."""
        self.predictor = predictor
        self.posterior = post
        self.indices = indices
        self.latencies_ms = latencies_ms
        self.calibrating = calibrating_mask(calibrating, len(latencies_ms))
        self.op_costs = None if op_costs is None else cost_vector(op_costs)
        self.structure = None if self.op_costs is None else device_columns(self.op_costs)  # [15625, 2], once

    def _rows(self, archs) -> np.ndarray:
        return self.predictor.rows(archs) if self.structure is None else self.predictor.rows(archs, self.structure)

    def predict(self, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean ms, std ms) of the given NB201 indices; None = all 15,625 by official index."""
        phi = self._rows(indices)
        post = self.posterior
        mu = phi @ post.mean
        var = ((phi @ post.cov) * phi).sum(1) + post.noise_at(mu)
        return post.scale_ms * mu, post.scale_ms * post.std_factor * np.sqrt(np.maximum(var, 0.0))

    def prob_faster(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P(latency of a < latency of b), elementwise over paired index arrays (posterior + measurement noise)."""
        phi_a, phi_b = self._rows(a), self._rows(b)
        if phi_a.shape != phi_b.shape:
            raise ValueError(f"a and b must pair up: {len(phi_a)} vs {len(phi_b)}")
        diff = phi_b - phi_a
        post = self.posterior
        var = ((diff @ post.cov) * diff).sum(1) + post.noise_at(phi_a @ post.mean) + post.noise_at(phi_b @ post.mean)
        return ndtr((diff @ post.mean) / (post.std_factor * np.sqrt(np.maximum(var, 1e-18))))

    def rank(self, indices: Sequence[int]) -> list[int]:
        """The given NB201 indices, fastest first (consistent with ``prob_faster`` > 0.5)."""
        idx = _check_indices(indices)
        mean, _ = self.predict(idx)
        return [int(i) for i in idx[np.argsort(mean, kind="stable")]]

    def to_state(self) -> dict:
        """JSON-serialisable state (tens of kB)."""
        return {
            "format": DEVICE_STATE_FORMAT,
            "predictor_version": self.predictor.version,
            "indices": [int(i) for i in self.indices],
            "latencies_ms": [float(x) for x in self.latencies_ms],
            "op_costs": None if self.op_costs is None else [float(c) for c in self.op_costs],
            **self.calibrating_state(),
            **self.posterior.to_state(),
        }

    def calibrating_state(self) -> dict:
        """``{"calibrating": [K] booleans}`` when some samples calibrated the spread, else nothing."""
        return {} if self.calibrating is None else {"calibrating": [bool(c) for c in self.calibrating]}

    @classmethod
    def from_state(cls, predictor: Predictor, state: dict) -> DeviceModel:
        """Rebuild from ``to_state``; a state from another predictor version is re-adapted from its samples."""
        if state.get("format") != DEVICE_STATE_FORMAT:
            raise ValueError(f"not a device model state (format {state.get('format')!r})")
        if state.get("predictor_version") != predictor.version:
            return predictor.adapt(state["indices"], state["latencies_ms"], state.get("calibrating"))
        post = Posterior.from_state(state)
        idx = np.asarray(state["indices"], dtype=np.int64)
        lat = np.asarray(state["latencies_ms"], dtype=np.float64)
        return cls(predictor, post, idx, lat, state.get("op_costs"), state.get("calibrating"))


def _check_indices(indices) -> np.ndarray:
    idx = np.asarray(indices).reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"NB201 indices must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= NUM_ARCHS):
        raise ValueError(f"NB201 indices must lie in 0..{NUM_ARCHS - 1}")
    return idx
