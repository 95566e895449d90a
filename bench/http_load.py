"""A cheap HTTP/1.1 load generator for the REST benches: client processes apart from the server's, raw asyncio
connections (keep-alive, one request in flight each), closed loop or open-loop arrivals.

- Closed loop: every connection sends its next request when the answer to the last is in.
- Open loop: requests are due at a steady rate (all processes together offer ``rate`` per second, evenly spaced);
  a due request takes a free connection, else waits for one. Its latency runs from when it was due, so a server
  that falls behind shows in it (no coordinated omission); ``lags`` are how late the generator itself woke to
  issue each request (its own delay: when they grow, the generator is the bottleneck, not the server).

Times run from sending (or being due) to the last byte of the answer; answers are not decoded.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

NUM_ARCHS = 15625


@dataclass(frozen=True)
class Step:
    """One load step: ``connections`` over ``processes`` client processes for ``seconds``, asking ``path`` (GET, or
    POST of ``archs`` random NB201 positions for ``device`` when ``archs``); closed loop when ``rate`` is None."""

    base: str
    path: str
    key: str
    connections: int
    seconds: float
    rate: float | None = None
    processes: int = 2
    device: str = ""
    archs: int = 0


@dataclass(frozen=True)
class Result:
    """Latencies (s) of the requests answered, wall time (s), the open loop's send lags (s; empty closed), and the
    CPU time (s) the client processes used while sending (None when not measured)."""

    latencies: list[float]
    wall: float
    lags: list[float]
    cpu: float | None = None


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); nan when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _request(step: Step, host: str, rng: random.Random) -> bytes:
    head = f"{'POST' if step.archs else 'GET'} {step.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {step.key}"
    if not step.archs:
        return f"{head}\r\n\r\n".encode()
    body = json.dumps({"device": step.device, "archs": rng.sample(range(NUM_ARCHS), step.archs)}).encode()
    return f"{head}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> None:
        """Send ``request`` and read its whole answer; SystemExit unless it is a 200."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"answered {head.split(b' ', 2)[1].decode()}: {body[:300]!r}")


async def _run(step: Step, index: int, start_at: float) -> tuple[list[float], list[float], float]:
    url = urlsplit(step.base)
    share = step.connections // step.processes + (index < step.connections % step.processes)
    connections = [_Connection(*await asyncio.open_connection(url.hostname, url.port)) for _ in range(share)]
    rng = random.Random(index)
    requests = [_request(step, url.netloc, rng) for _ in range(1000)]
    latencies: list[float] = []
    lags: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    start = time.perf_counter()
    stop_at = start + step.seconds

    async def closed(connection: _Connection) -> None:
        while (sent := time.perf_counter()) < stop_at:
            await connection.call(requests[rng.randrange(len(requests))])
            latencies.append(time.perf_counter() - sent)

    async def due(at: float, request: bytes, free: asyncio.Queue[_Connection]) -> None:
        connection = await free.get()
        await connection.call(request)
        latencies.append(time.perf_counter() - at)
        free.put_nowait(connection)

    if step.rate is None:
        await asyncio.gather(*(closed(c) for c in connections))
    else:
        free: asyncio.Queue[_Connection] = asyncio.Queue()
        for connection in connections:
            free.put_nowait(connection)
        interval = step.processes / step.rate
        at, tasks = start + index / step.rate, []
        while at < stop_at:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            lags.append(max(0.0, time.perf_counter() - at))
            tasks.append(asyncio.create_task(due(at, requests[rng.randrange(len(requests))], free)))
            at += interval
        await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu
    for connection in connections:
        connection.writer.close()
    return latencies, lags, cpu


def _process(step: Step, index: int, start_at: float) -> tuple[list[float], list[float], float]:
    try:
        import uvloop

        return uvloop.run(_run(step, index, start_at))
    except ImportError:
        return asyncio.run(_run(step, index, start_at))


def run(step: Step) -> Result:
    """Run ``step`` in ``step.processes`` fresh client processes (started, connected, then all set off together)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(step.processes) as pool:
        start_at = time.time() + 1.5  # time for the processes to start and connect
        parts = pool.starmap(_process, [(step, index, start_at) for index in range(step.processes)])
        wall = time.time() - start_at
    latencies = [s for part, _, _ in parts for s in part]
    return Result(latencies, wall, [s for _, part, _ in parts for s in part], sum(cpu for _, _, cpu in parts))
