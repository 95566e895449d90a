"""EXPERIMENT (issue #16, not adopted): the NB201 prior as a mixture over clusters of source devices, scored by
``bench/predictor_loo.py`` (its tables, with this posterior in place of ``prior.posterior``).

Each cluster of source heads is a Gaussian component (its mean; its scatter shrunk toward the pooled within-cluster
scatter, ``MIX_TARGET=global``: toward the global covariance, with ``MIX_NU`` pseudo-devices; plus the scale variance
and jitter), weighed by ``MIX_COVSCALE`` values and a small spread (``MIX_SPREAD``); the global prior (its spread and
broad grids as today) is a further component. Prior mass ``MIX_MASS`` on the clusters (shared equally), the rest on
the global one; every setting and noise weighed by marginal likelihood and moment-matched (``blr.weighed``).
``MIX_CLUSTERS``: ``family`` (desktop GPUs by batch size, server CPUs, phones), ``kmeansN`` (k-means on the heads'
predictions of 2,000 archs), ``none`` (the global prior alone: identical to ``prior.posterior``).
``MIX_GLOBSCALE``: weights of the global covariance (the control without clusters).

    flock /work/scratch/bench.lock env MIX_CLUSTERS=family MIX_COVSCALE=0.1,0.3,1 MIX_MASS=0.2 \
      .venv/bin/python bench/mixture_exp.py --trials 3 --cache build/loo-cache --json build/mix.json
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np

from latfarm.predictor import prior as P
from latfarm.predictor.blr import weighed
from latfarm.predictor.latencies import checked_latencies
from latfarm.predictor.model import DeviceModel, Predictor, _check_indices

sys.path.insert(0, str(Path(__file__).resolve().parent))
import predictor_loo  # noqa: E402

CLUSTERS = os.environ.get("MIX_CLUSTERS", "family")
MASS = float(os.environ.get("MIX_MASS", "0.5"))
TARGET = os.environ.get("MIX_TARGET", "within")
NU = float(os.environ.get("MIX_NU", "3"))
SPREAD = tuple(float(v) for v in os.environ.get("MIX_SPREAD", "0,0.01,0.03,0.1").split(","))
COVSCALE = tuple(float(v) for v in os.environ.get("MIX_COVSCALE", "1").split(","))
GLOBSCALE = tuple(float(v) for v in os.environ.get("MIX_GLOBSCALE", "1").split(","))


def groups_of(names, heads, phi):
    if CLUSTERS == "none":
        return []
    if CLUSTERS == "family":
        keys = {}
        for n in names:
            fam = predictor_loo.family(n)
            key = fam + ("_b" + n.rsplit("_", 1)[1] if fam == "gpu" else "")
            keys.setdefault(key, []).append(n)
        return list(keys.values())
    k = int(CLUSTERS.removeprefix("kmeans"))
    rows = np.random.default_rng(0).choice(len(phi), 2000, replace=False)
    pts = np.stack([phi[rows] @ heads[n] for n in names])  # [D, 2000]
    best = None
    for seed in range(10):
        rng = np.random.default_rng(seed)
        cent = pts[rng.choice(len(pts), min(k, len(pts)), replace=False)]
        for _ in range(50):
            lab = np.argmin(((pts[:, None] - cent[None]) ** 2).sum(-1), 1)
            cent = np.stack([pts[lab == j].mean(0) if np.any(lab == j) else cent[j] for j in range(len(cent))])
        sse = ((pts - cent[lab]) ** 2).sum()
        if best is None or sse < best[0]:
            best = (sse, lab)
    lab = best[1]
    return [[n for n, c in zip(names, lab, strict=True) if c == j] for j in np.unique(lab)]


def components(prior, heads, groups):
    means = [np.mean([heads[n] for n in g], 0) for g in groups]
    scatter = [sum(np.outer(heads[n] - m, heads[n] - m) for n in g) for g, m in zip(groups, means, strict=True)]
    dof = sum(len(g) - 1 for g in groups)
    target = sum(scatter) / max(dof, 1) if TARGET == "within" else prior.cov
    out = []
    for g, m, s in zip(groups, means, scatter, strict=True):
        cov = (s + NU * target) / (len(g) - 1 + NU)
        cov = cov + P.SCALE_VARIANCE * np.outer(m, m) + P.JITTER * np.eye(len(m))
        out.append((m, cov, g))
    return out


def mixture_posterior(prior, comps, phi_s, y_ms):
    scale = float(np.mean(y_ms) / np.mean(phi_s @ prior.mean))
    y = y_ms / scale
    rel_var = np.maximum(y / y.mean(), P.MIN_RELATIVE) ** 2
    floor = P.quantisation_variance(y_ms) / scale**2
    broad = P._broad_variance(phi_s)
    parts = [prior.cov, np.diag(prior.spread), broad] + [c[1] for c in comps]
    n = len(parts)

    def coef(main, s, b, comp=None, c=1.0):
        v = [main, s, b] + [0.0] * len(comps)
        if comp is not None:
            v[3 + comp] = c
        return tuple(v)

    glob = np.log(1 - MASS) if comps else 0.0
    hyps = [
        (prior.mean[None], np.array([glob]), [coef(c, s, 0.0) for s, c in itertools.product(P.SPREAD_GRID, GLOBSCALE)]),
        (
            prior.mean[None],
            np.array([glob + P.BROAD_LOG_PRIOR]),
            [coef(c, s, b) for s, b, c in itertools.product(P.SPREAD_GRID, P.BROAD_GRID, GLOBSCALE) if b > 0],
        ),
    ]
    for i, (m, _, _) in enumerate(comps):
        grid = [coef(0.0, s, 0.0, i, c) for s, c in itertools.product(SPREAD, COVSCALE)]
        hyps.append((m[None], np.array([np.log(MASS / len(comps))]), grid))
    assert all(len(g) == n for h in hyps for g in h[2])
    mean, cov, noise = weighed(prior, parts, hyps, phi_s, y, rel_var, floor)
    return P.Posterior(mean, cov, scale, noise + floor)


class MixturePredictor(Predictor):
    def __init__(self, base: Predictor, lat: dict):
        super().__init__(base.prior, base.embeddings, base.meta, base.gcn_state)
        heads, _ = P.source_heads(self.phi, lat)
        self.comps = components(self.prior, heads, groups_of(list(lat), heads, self.phi))

    def adapt(self, indices, latencies_ms):
        idx = _check_indices(indices)
        lat = checked_latencies(np.asarray(latencies_ms, dtype=np.float64).reshape(-1), "adapt")
        post = mixture_posterior(self.prior, self.comps, self.phi[idx], lat)
        return DeviceModel(self, post, idx, lat)


_orig = predictor_loo.cached_pretrain


def cached(keep, **kw):
    base = _orig(keep, **kw)
    mp = MixturePredictor(base, keep)
    print("   clusters:", [c[2] for c in mp.comps], flush=True)
    return mp


predictor_loo.cached_pretrain = cached
predictor_loo.serving_times = lambda *a: {}

if __name__ == "__main__":
    print(
        f"MIX clusters={CLUSTERS} mass={MASS} target={TARGET} nu={NU} spread={SPREAD} covscale={COVSCALE}"
        f" globscale={GLOBSCALE}"
    )
    predictor_loo.main()
