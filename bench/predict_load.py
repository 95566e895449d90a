"""REST prediction load: N concurrent clients asking a real ``latfarm serve`` for ``/v1/predict`` of 100 archs.

The bench seeds one NB201 device (``--measured`` archs imported from a HELP latency file, and an active adaptation
fitted on 10 of them), starts the server and prints:

- ``/v1/predict`` for all 15,625 archs sent the moment the server prints its URL (its warm-up still running); then,
  after a restart, the first such request once the server logged its prediction tables ready (the seconds it took
  are shown), and 5 more (warm);
- a table, for each ``--clients`` N (connections): ``/healthz`` in a closed loop (what any request costs: the
  floor), ``/v1/predict`` of 100 random archs in a closed loop and in an open loop offering ``--rate`` requests/s
  (``http_load``: requests due at a steady rate, timed from when they were due), each for ``--seconds``: requests/s,
  the clients' p50 / p99 / max, the server's own mean and p99 time in the app (its ``/metrics`` histogram: the
  bucket bound holding the p99), the server process's CPU time per request, the generator's CPU time per request
  (its client processes together) and its lag p99 (how late it issued requests: near 0 when the generator keeps
  up).

The clients run in ``--processes`` processes of their own (raw asyncio HTTP/1.1, one request in flight per
connection), on the same machine as the server. ``--httpx`` adds the former generator's rows: httpx clients in
the bench's own process, each client pacing itself.

    .venv/bin/python bench/predict_load.py [--clients 10,50] [--seconds 10] [--rate 100] [--processes 2] [--httpx]
        [--db URL] [--redis URL]

``--db postgresql+psycopg://postgres@127.0.0.1:5432/test`` creates a database ``predict_bench_<pid>`` on that
server for the run and drops it afterwards. Without ``--db`` the server uses a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from http_load import Result, Step, quantile, run  # bench/ is the script's folder: on sys.path
from scratch_db import create_pg, drop_pg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELP_DIR = ROOT.parent / "shared" / "datasets" / "help-nb201"
ADMIN_KEY = "lf_admin_predict-bench"
DEVICE = "bench-pixel3"
REST_LINE = re.compile(r"latfarm REST\s+(http://\S+)")
ARCHS_PER_REQUEST = 100
NUM_ARCHS = 15625


def _seed(url: str, help_dir: Path, measured: int) -> None:
    """One device with ``measured`` imported HELP pixel3 latencies and an active adaptation fitted on 10."""
    import numpy as np
    import torch

    from latfarm.predictor import nb201
    from latfarm.predictor.model import Predictor
    from latfarm.services.domain.conditions import Conditions
    from latfarm.services.store.crud import ensure_archs
    from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
    from latfarm.services.store.models import Adaptation, AdaptState, Device, Measurement, Source, utcnow

    latency = torch.load(help_dir / "latency" / "pixel3.pt")
    chosen = [int(i) for i in np.random.default_rng(0).choice(NUM_ARCHS, measured, replace=False)]
    strings = {i: nb201.to_string(nb201.from_official_index(i)) for i in chosen}
    conditions = Conditions()
    predictor = Predictor.load()
    model = predictor.adapt(chosen[:10], [float(latency[i]) for i in chosen[:10]])
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as session:
        device = Device(name=DEVICE)
        session.add(device)
        session.flush()
        ids = ensure_archs(session, list(strings.values()))
        session.add_all(
            Measurement(
                device_id=device.id,
                arch_id=ids[strings[i]],
                source=Source.imported,
                dataset="help-nb201",
                latency_ms=float(latency[i]),
                median_ms=float(latency[i]),
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
            for i in chosen
        )
        session.add(
            Adaptation(
                device_id=device.id,
                state=AdaptState.active,
                samples=10,
                sample_archs=chosen[:10],
                checkpoint=predictor.version,
                params=model.to_state(),
                conditions_key=conditions.key,
                activated_at=utcnow(),
            )
        )
    engine.dispose()


def _start_server(url: str, redis: str | None, data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    latfarm = str(Path(sys.executable).with_name("latfarm"))
    command = [latfarm, "serve", "--db", url, "--data-dir", str(data_dir), "--http-port", "0", "--grpc-port", "0"]
    if redis:
        command += ["--redis", redis]
    env = os.environ | {"LATFARM_ADMIN_KEY": ADMIN_KEY}
    log = log_path.open("a")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True, env=env)
    assert server.stdout is not None
    for line in server.stdout:
        if match := REST_LINE.search(line):
            drain = threading.Thread(target=log.writelines, args=(server.stdout,), daemon=True)
            drain.start()  # uvicorn's access log goes to stdout: a full pipe would stall the server
            return server, match.group(1)
    raise SystemExit(f"latfarm serve exited ({server.wait()}); see {log_path}")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(30)


async def _call(client, path: str, archs: list[int] | None) -> float:
    """Seconds one request takes: POST ``archs`` to ``path``, or GET ``path`` when None."""
    start = time.perf_counter()
    if archs is None:
        response = await client.get(path)
    else:
        response = await client.post(path, json={"device": DEVICE, "archs": archs})
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def _client(base: str):
    import httpx

    return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)


async def _all_archs(base: str, times: int) -> list[float]:
    async with _client(base) as client:
        return [await _call(client, "/v1/predict", list(range(NUM_ARCHS))) for _ in range(times)]


async def _load(base: str, path: str, clients: int, seconds: float, rate: float | None) -> tuple[list[float], float]:
    """The old generator (``--httpx``): ``clients`` httpx clients in this process for ``seconds``, in a closed loop
    (``rate`` None) or together offering ``rate`` requests/s (each at a steady pace, phases spread; a late answer
    delays that client's next request): (latencies in s, wall time). POSTs 100 random archs, except to
    ``/healthz``. The clients are made before the clock starts."""
    latencies: list[float] = []
    made = [_client(base) for _ in range(clients)]
    start = time.perf_counter()
    stop_at = start + seconds

    async def one(seed: int) -> None:
        rng = random.Random(seed)
        interval = 0.0 if rate is None else clients / rate
        next_at = time.perf_counter() + rng.random() * interval
        async with made[seed] as client:
            while (now := time.perf_counter()) < stop_at:
                await asyncio.sleep(max(0.0, next_at - now))
                archs = None if path == "/healthz" else rng.sample(range(NUM_ARCHS), ARCHS_PER_REQUEST)
                latencies.append(await _call(client, path, archs))
                next_at += interval

    await asyncio.gather(*(one(n) for n in range(clients)))
    return latencies, time.perf_counter() - start


def _wait_for_tables(log_path: Path, timeout_s: float) -> str:
    """How long the server took to log its prediction tables ready (``+N s``), or how long was waited for it."""
    start = time.perf_counter()
    while "prediction tables ready" not in log_path.read_text():
        if time.perf_counter() - start > timeout_s:
            return f"not logged in {timeout_s:.0f} s"
        time.sleep(0.05)
    return f"+{time.perf_counter() - start:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,50", help="comma-separated connection counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load step")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s offered in the open-loop steps")
    parser.add_argument("--processes", type=int, default=2, help="client processes the connections are spread over")
    parser.add_argument("--httpx", action="store_true", help="also the old generator: httpx clients in this process")
    parser.add_argument("--measured", type=int, default=200, help="imported measurements of the device")
    parser.add_argument("--help-dir", type=Path, default=HELP_DIR, help="HELP NB201 folder (latency/pixel3.pt)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the tables log line")
    parser.add_argument("--db", help="SQLAlchemy URL of a PostgreSQL server (a database is created on it)")
    parser.add_argument("--redis", help="Redis URL for the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = create_pg(args.db, "predict_bench") if args.db else f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            subprocess.run([str(Path(sys.executable).with_name("latfarm")), "migrate", "--db", url], check=True)
            _seed(url, args.help_dir, args.measured)
            data_dir, log_path = Path(tmp) / "data", Path(tmp) / "serve.log"
            server, base = _start_server(url, args.redis, data_dir, log_path)
            try:
                (at_start,) = asyncio.run(_all_archs(base, 1))  # sent while the warm-up runs
            finally:
                _stop(server)
            log_path.write_text("")
            server, base = _start_server(url, args.redis, data_dir, log_path)
            try:
                ready = _wait_for_tables(log_path, args.ready_timeout)
                (cold,) = asyncio.run(_all_archs(base, 1))
                warm = asyncio.run(_all_archs(base, 5))
                print(
                    f"all 15,625 archs: sent as the server starts {at_start * 1000:.0f} ms; first after restart "
                    f"({ready}) {cold * 1000:.0f} ms; warm (5) {min(warm) * 1000:.0f}-{max(warm) * 1000:.0f} ms"
                )
                rows = [
                    _step(server.pid, base, args, int(n), path, rate)
                    for n in args.clients.split(",")
                    for path, rate in (("/healthz", None), ("/v1/predict", None), ("/v1/predict", args.rate))
                ]
                if args.httpx:
                    rows += [
                        _httpx_step(server.pid, base, args, int(n), rate)
                        for n in args.clients.split(",")
                        for rate in (None, args.rate)
                    ]
            finally:
                _stop(server)
        finally:
            if args.db:
                drop_pg(args.db, url)
    backend = "PostgreSQL" if args.db else "SQLite"
    print(
        f"\n/v1/predict on {backend}{' + Redis' if args.redis else ''} ({args.measured} measured archs, adapted), "
        f"load average {os.getloadavg()[0]:.1f}; client p50 / p99 / max and server p99 in ms"
    )
    print(
        f"| {'request':44} | conns | req/s | p50 | p99 | max | server mean / p99 | server CPU | gen. CPU "
        "| gen. lag p99 |"
    )
    print(f"|{'-' * 46}|-------|-------|-----|-----|-----|-------------------|------------|----------|--------------|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _step(pid: int, base: str, args, connections: int, path: str, rate: float | None) -> list[str]:
    """One load step with the separate-process generator, as a table row."""
    archs = 0 if path == "/healthz" else ARCHS_PER_REQUEST
    step = Step(base, path, ADMIN_KEY, connections, args.seconds, rate, args.processes, DEVICE, archs)
    return _measured(pid, base, path, lambda: run(step), f"{path}{' (floor)' if not archs else ''}", rate, connections)


def _httpx_step(pid: int, base: str, args, connections: int, rate: float | None) -> list[str]:
    """One load step with the old generator (httpx clients in this process), as a table row."""

    def load() -> Result:
        latencies, wall = asyncio.run(_load(base, "/v1/predict", connections, args.seconds, rate))
        return Result(latencies, wall, [])

    return _measured(pid, base, "/v1/predict", load, "/v1/predict, httpx in-process", rate, connections)


def _measured(pid: int, base: str, path: str, load, what: str, rate: float | None, connections: int) -> list[str]:
    cpu, before = _cpu_s(pid), _server_times(base, path)
    result = load()
    cpu_ms = (_cpu_s(pid) - cpu) * 1000 / len(result.latencies)
    mean, p99 = _server_delta(before, _server_times(base, path))
    pace = "closed" if rate is None else f"open {rate:.0f}/s"
    ms = [f"{quantile(result.latencies, q) * 1000:.0f}" for q in (0.5, 0.99, 1.0)]
    lag = f"{quantile(result.lags, 0.99) * 1000:.1f}" if result.lags else "-"
    generator = f"{result.cpu * 1000 / len(result.latencies):.2f} ms" if result.cpu is not None else "-"
    return [
        f"{what}, {pace}".ljust(44),
        f"{connections:>5}",
        f"{len(result.latencies) / result.wall:>5.0f}",
        *ms,
        f"{mean:.1f} / {p99}",
        f"{cpu_ms:.2f} ms",
        generator,
        lag,
    ]


def _server_times(base: str, path: str) -> dict[str, float]:
    """The server's request-duration histogram of ``path`` (``/metrics``): cumulative counts by bucket bound, and
    ``sum`` and ``count``."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("latfarm_http_request_duration_seconds") and f'route="{path}"' in line:
            name, value = line.rsplit(" ", 1)
            le = re.search(r'le="([^"]+)"', name)
            found[le.group(1) if le else name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    return found


def _server_delta(before: dict[str, float], after: dict[str, float]) -> tuple[float, str]:
    """Mean server time (ms) of the requests between two readings, and the histogram bound (ms) holding their 99th
    percentile."""
    count = after.get("count", 0) - before.get("count", 0)
    if not count:
        return float("nan"), "-"
    mean = (after["sum"] - before.get("sum", 0)) / count * 1000
    for bound in sorted((b for b in after if b not in ("sum", "count", "created")), key=float):
        if after[bound] - before.get(bound, 0) >= 0.99 * count:
            return mean, f"≤{float(bound) * 1000:.0f}"
    return mean, "-"


if __name__ == "__main__":
    main()
