"""Serving time of ``POST /v1/predict`` for random FBNet archs (computed per request, no cached table).

A fresh app on a temporary SQLite database; one device with 20 measured FBNet archs (an on-the-fly model). Prints
the first request (loads the FBNet predictor and fits) and the median of the following ones.

    .venv/bin/python bench/fbnet_predict_api.py --archs 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from latfarm.predictor.spaces import get_space
from latfarm.services.api import create_app
from latfarm.services.core.config import Settings
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.runtime import Runtime
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Measurement, Source

ADMIN_KEY = "lf_admin_bench-fbnet-predict"


def _add_rows(runtime: Runtime, device: str, archs: list[str]) -> None:
    """Imported FBNet rows (1 ms per arch, plus its position) under the device's FBNet conditions."""
    with transaction(runtime.sessions) as session:
        target = device_by_name(session, device)
        conditions = conditions_of(target).for_space("fbnet")
        ids = ensure_archs(session, archs, "fbnet")
        session.add_all(
            Measurement(
                device_id=target.id, arch_id=ids[a], source=Source.imported, dataset="bench", latency_ms=1.0 + n,
                median_ms=1.0 + n, conditions=conditions.to_dict(), conditions_key=conditions.key,
            )
            for n, a in enumerate(archs)
        )  # fmt: skip


def main() -> None:
    """Time the requests and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    space = get_space("fbnet")
    folder = Path(tempfile.mkdtemp(prefix="latfarm-bench-"))
    settings = Settings(data_dir=folder, db_url=f"sqlite:///{folder}/bench.sqlite", admin_key=ADMIN_KEY)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with Runtime(settings) as runtime:
        runtime.bootstrap()
        with TestClient(create_app(runtime)) as api:
            api.post("/v1/devices", json={"name": "bench"}, headers=headers).raise_for_status()
            _add_rows(runtime, "bench", [space.to_string(a) for a in space.sample(20, seed=1)])
            body = {"device": "bench", "space": "fbnet", "archs": [list(a) for a in space.sample(args.archs, seed=2)]}
            times = []
            for _ in range(args.repeat + 1):
                start = time.perf_counter()
                api.post("/v1/predict", json=body, headers=headers).raise_for_status()
                times.append(time.perf_counter() - start)
    print(f"POST /v1/predict, {args.archs} random FBNet archs: first {times[0]:.3f} s (loads the predictor, fits), "
          f"then median {statistics.median(times[1:]):.3f} s over {args.repeat}")  # fmt: skip


if __name__ == "__main__":
    main()
