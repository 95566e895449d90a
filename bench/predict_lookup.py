"""Server CPU of the device lookup and table freshness check of one NB201 ``POST /v1/predict``, in process.

A fresh app on a temporary SQLite database, one device. Per round, ``--calls`` calls each (a read session apiece,
as a request has): ``table_by_name`` (what ``/v1/predict`` does: the device object reused by name, checked in the
freshness query) and ``device_by_name`` + ``table`` (an ORM read of the device, then the freshness query). Prints
the CPU time per call of both.

    .venv/bin/python bench/predict_lookup.py --calls 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from latfarm.services.api import create_app
from latfarm.services.core.config import Settings
from latfarm.services.runtime import Runtime
from latfarm.services.store.crud import device_by_name

ADMIN_KEY = "lf_admin_bench-predict-lookup"


def main() -> None:
    """Time both lookups and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="latfarm-bench-"))
    settings = Settings(data_dir=folder, db_url=f"sqlite:///{folder}/bench.sqlite", admin_key=ADMIN_KEY)
    with Runtime(settings) as runtime:
        runtime.bootstrap()
        app = create_app(runtime)
        with TestClient(app) as api:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            api.post("/v1/devices", json={"name": "bench"}, headers=headers).raise_for_status()
            service = app.state.predictions

            def by_name(session: Session) -> None:
                service.table_by_name(session, "bench", "nb201")

            def orm_then_table(session: Session) -> None:
                device = device_by_name(session, "bench")
                assert device is not None
                service.table(session, device, "nb201")

            lookups: dict[str, Callable[[Session], None]] = {
                "table_by_name": by_name,
                "device_by_name + table": orm_then_table,
            }
            for round_ in range(1, args.rounds + 1):
                for name, lookup in lookups.items():
                    start = time.process_time()
                    for _ in range(args.calls):
                        with app.state.read_sessions() as session:
                            lookup(session)
                    per_call = (time.process_time() - start) / args.calls * 1e3
                    print(f"round {round_}: {name}: {per_call:.3f} ms CPU per call (read session included)")


if __name__ == "__main__":
    main()
