"""CPU per REST request inside the app: ASGI calls straight into ``create_app``'s app (no sockets, no HTTP parsing),
one at a time, for ``/healthz`` and ``/v1/predict`` of 100 random NB201 archs on an adapted device (SQLite, seeded
as ``predict_load.py`` does). Prints process CPU ms per request (all threads), median of ``--rounds``.

    .venv/bin/python bench/rest_cpu.py [--requests 2000] [--rounds 5] [--profile]

``--profile`` then prints the top functions by cumulative time of the predict requests (cProfile; thread hops,
AnyIO's and the loop executor's, run inline for it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from predict_load import ADMIN_KEY, DEVICE, HELP_DIR, _seed  # bench/ is the script's folder: on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def _call(app, method: str, path: str, body: bytes) -> bytes:
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {ADMIN_KEY}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    sent = False
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise SystemExit(f"{path} answered {message['status']}")
        chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


def _bodies(count: int) -> list[bytes]:
    rng = random.Random(0)
    return [json.dumps({"device": DEVICE, "archs": rng.sample(range(15625), 100)}).encode() for _ in range(count)]


async def _round(app, method: str, path: str, bodies: list[bytes]) -> float:
    start = time.process_time()
    for body in bodies:
        await _call(app, method, path, body)
    return (time.process_time() - start) * 1000 / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per request kind (median shown)")
    parser.add_argument("--profile", action="store_true", help="then cProfile the predict requests")
    args = parser.parse_args()
    from latfarm.services.api import create_app
    from latfarm.services.core.config import Settings
    from latfarm.services.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp) / "data", db_url=url, admin_key=ADMIN_KEY)
        with Runtime(settings) as runtime:
            runtime.bootstrap()
            _seed(url, HELP_DIR, 200)
            app = create_app(runtime)
            bodies = _bodies(args.requests)
            asyncio.run(_call(app, "POST", "/v1/predict", bodies[0]))  # builds the device's table
            every = json.dumps({"device": DEVICE, "archs": list(range(15625))}).encode()
            kinds = {
                "/healthz": ("GET", [b""] * args.requests),
                "/v1/predict 100 archs": ("POST", bodies),
                "/v1/predict all archs": ("POST", [every] * max(1, args.requests // 20)),
            }
            results: dict[str, list[float]] = {name: [] for name in kinds}
            for _ in range(args.rounds):  # interleaved, so machine load hits both kinds alike
                for name, (method, sent) in kinds.items():
                    results[name].append(asyncio.run(_round(app, method, name.split()[0], sent)))
            if args.profile:
                _profile(app, bodies)
    print(f"CPU per request (ms, median of {args.rounds} rounds of {args.requests}; load {os.getloadavg()[0]:.1f})")
    for name, values in results.items():
        print(f"  {name:24} {statistics.median(values):.3f}  (rounds: {', '.join(f'{v:.3f}' for v in values)})")


def _profile(app, bodies: list[bytes]) -> None:
    import cProfile
    import pstats

    import anyio.to_thread

    async def inline(func, *args, **_):
        return func(*args)

    def inline_executor(_executor, func, *args) -> asyncio.Future:
        future = loop.create_future()
        future.set_result(func(*args))
        return future

    anyio.to_thread.run_sync = inline  # the routes' thread hops run inline: cProfile sees one thread
    loop = asyncio.new_event_loop()
    loop.run_in_executor = inline_executor  # type: ignore[method-assign]
    profile = cProfile.Profile()
    profile.enable()
    loop.run_until_complete(_round(app, "POST", "/v1/predict", bodies))
    profile.disable()
    loop.close()
    pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(int(os.environ.get("TOP", "40")))


if __name__ == "__main__":
    main()
