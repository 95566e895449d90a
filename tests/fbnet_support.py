"""FBNet helpers shared by the service tests: a synthetic device's latencies, random archs, stored rows."""

from __future__ import annotations

import numpy as np

from latfarm.predictor.fbnet_features import network_costs
from latfarm.predictor.spaces import get_space
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Measurement, Source

FBNET = get_space("fbnet")
SCALE = network_costs(np.asarray(FBNET.sample(500, seed=99))).mean(0)  # a typical arch's costs


def truth_ms(archs: list[str]) -> np.ndarray:
    """A device whose latency follows the built network's FLOPs and memory traffic (what phones and GPUs mostly
    pay for), plus a fixed cost: a target the predictor has never seen."""
    costs = network_costs(np.asarray([FBNET.parse(a) for a in archs])) / SCALE
    return 0.4 + 3.0 * costs[:, 1] + 1.5 * costs[:, 2]


def fbnet_strings(n: int, seed: int) -> list[str]:
    """``n`` random FBNet archs (canonical strings), seeded."""
    return [FBNET.to_string(a) for a in FBNET.sample(n, seed=seed)]


def add_fbnet_rows(api, device: str, archs: list[str], latencies: np.ndarray) -> None:
    """Imported FBNet rows of ``device`` under its conditions for FBNet."""
    with transaction(api.app.state.sessions) as session:
        target = device_by_name(session, device)
        conditions = conditions_of(target).for_space("fbnet")
        ids = ensure_archs(session, archs, "fbnet")
        session.add_all(
            Measurement(
                device_id=target.id,
                arch_id=ids[a],
                source=Source.imported,
                dataset="help-fbnet",
                latency_ms=float(ms),
                median_ms=float(ms),
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
            for a, ms in zip(archs, latencies, strict=True)
        )
