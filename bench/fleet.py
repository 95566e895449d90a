"""Fleet load: N simulated agents against a real ``latfarm serve``, each on its own gRPC connection (grpc.aio).

Every agent registers, leases up to 16 jobs with a 5 s long-poll, reports them at once (ok results), and sends a
heartbeat every 10 s naming the jobs it holds. The bench seeds one device with ``--jobs`` jobs over ``--archs``
distinct archs (so few models are exported), starts the server, waits for the export worker, runs the agents until
every job is reported, then checks in the database that every job is done with exactly one measurement. Prints
results/s, lease p50/p99, heartbeat p99 (latencies include retries after a busy server's hint), RPC errors by
status, busy refusals, where the CPU went per 1,000 results (each server process, PostgreSQL, Redis, the load
generator, the rest of the machine: ``bench/cpu_split.py``), and the exactly-once check. Also, while the agents
run: ``GET /healthz`` every ``--healthz-every-s`` from a process of its own (p50 / p99, answers other than 200), how
the agents' connections are split between the server's gRPC processes (sampled each second: ``bench/connections.py``)
and how evenly the agents got results (an agent served by a busier process makes fewer cycles).

    .venv/bin/python bench/fleet.py [--agents 50] [--jobs 2000] [--archs 16] [--db URL] [--redis URL] [--wait-s 5]
        [--grpc-processes N] [--calls N] [--healthz-every-s 0.1]

``--jobs 0`` measures an idle fleet: the agents long-poll for ``--limit-s`` seconds and the server's CPU is printed.

``--calls N`` measures the server's CPU per call instead (``--grpc-processes 1`` for a clean figure): one agent makes
N leases of 16 jobs (no wait), then N heartbeats naming 16 held jobs, then N reports of 16 results, one call at a
time; each kind's server CPU (ms per call, its background workers included) and PostgreSQL's (this database's
backends and the background processes) are printed. It seeds 16 N jobs.

The server's CPU includes its gRPC child processes (``--grpc-processes``). The load generator runs on the same
machine; measured tables, with the machine's load: docs/fleet.md, "Fleet figures".

``--db postgresql+psycopg://postgres@127.0.0.1:5432/test`` creates a database ``fleet_bench_<pid>`` on that server
for the run and drops it afterwards. Without ``--db`` the server uses a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import connections
import cpu_split  # bench/ is the script's folder: on sys.path
from scratch_db import create_pg, drop_pg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEASE_JOBS = 16
LEASE_WAIT_S = 5.0
HEARTBEAT_S = 10.0
CALL_TIMEOUT_S = 30.0
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
GRPC_LINE = re.compile(r"latfarm gRPC\s+(\S+):(\d+)")
REST_LINE = re.compile(r"latfarm REST\s+http://(\S+):(\d+)")


@dataclass
class Tally:
    """What the agents saw: call latencies (s), acks, RPC errors by status."""

    lease_s: list[float] = field(default_factory=list)
    leased_s: list[float] = field(default_factory=list)  # the leases that returned jobs
    heartbeat_s: list[float] = field(default_factory=list)
    report_s: list[float] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    refused: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    busy: Counter = field(default_factory=Counter)  # refusals with a retry hint (retried), by message
    lost: int = 0
    per_agent: Counter = field(default_factory=Counter)  # results accepted, by agent index
    split: list[dict[int, int]] = field(default_factory=list)  # the agents' connections by server pid, each second


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _result(job):
    """An ok result for a leased job (plausible figures)."""
    from latfarm.proto.v1 import agent_pb2

    stats = agent_pb2.Stats(median_ms=2.5, mean_ms=2.6, std_ms=0.1, min_ms=2.4, p90_ms=2.7, runs=100)
    stats.round_medians_ms.extend([2.5, 2.49, 2.52])
    stats.latency_ms, stats.statistic = 2.4, "min"
    return agent_pb2.Result(
        job_id=job.job_id,
        ok=True,
        stats=stats,
        artifact_sha256=job.artifact_sha256,
        runtime="onnxruntime",
        runtime_version="bench",
        threads=1,
        settings=agent_pb2.MeasureSettings(rounds=3, runs_per_round=20, statistic="min"),
    )


async def _call(tally: Tally, samples: list[float] | None, call, request, metadata):
    """One RPC as an agent makes it: a busy server's refusal (RESOURCE_EXHAUSTED with ``retry-after-ms``) is
    counted in ``tally.busy`` and retried after the hint with the agent's jitter. The latency, retries included,
    goes into ``samples``; a failure into ``tally.errors`` (returns None)."""
    import grpc

    started = time.perf_counter()
    while True:
        try:
            reply = await call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            break
        except grpc.aio.AioRpcError as err:
            hint = dict(err.trailing_metadata() or ()).get("retry-after-ms")
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and hint is not None:
                tally.busy[re.sub(r"\d+ ms", "N ms", err.details() or "")[:100]] += 1
                await asyncio.sleep(float(hint) / 1000 * random.uniform(1.0, 1.5))
                continue
            tally.errors[f"{err.code().name}: {(err.details() or '')[:80]}"] += 1
            return None
    if samples is not None:
        samples.append(time.perf_counter() - started)
    return reply


async def _agent(address: str, token: str, index: int, tally: Tally, done: asyncio.Event, wait_s: float) -> None:
    """One simulated agent until ``done``."""
    import grpc

    from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc

    # a connection of its own, as an agent on its own machine has (channels of one process share one by default)
    async with grpc.aio.insecure_channel(address, options=OWN_CONNECTION) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        descriptor = agent_pb2.DeviceDescriptor(hostname=f"sim-{index}", formats=["onnx"])
        reply = None
        while reply is None and not done.is_set():
            request = agent_pb2.RegisterRequest(enrollment_token=token, descriptor=descriptor, name=f"sim-{index}")
            reply = await _call(tally, None, stub.Register, request, None)
        if reply is None:
            return
        metadata = (("authorization", f"Bearer {reply.credential}"),)
        held: set[str] = set()
        reporting: set[str] = set()  # reports in flight: a heartbeat may find them done before the acks arrive

        async def beat() -> None:
            await asyncio.sleep(HEARTBEAT_S * (index % 100) / 100)  # agents start together, beat spread out
            while not done.is_set():
                request = agent_pb2.HeartbeatRequest(job_ids=sorted(held), state="measuring" if held else "idle")
                answer = await _call(tally, tally.heartbeat_s, stub.Heartbeat, request, metadata)
                if answer is not None:
                    lost = held.intersection(answer.lost_job_ids) - reporting  # not those reported meanwhile
                    tally.lost += len(lost)
                    held.difference_update(lost)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), HEARTBEAT_S)

        beating = asyncio.create_task(beat())
        try:
            while not done.is_set():
                request = agent_pb2.LeaseRequest(max_jobs=LEASE_JOBS, wait_seconds=wait_s, formats=["onnx"])
                leased = await _call(tally, tally.lease_s, stub.LeaseJobs, request, metadata)
                if leased is None:
                    await asyncio.sleep(0.5)  # what an agent does after RESOURCE_EXHAUSTED or a deadline
                    continue
                if not leased.jobs:
                    continue
                tally.leased_s.append(tally.lease_s[-1])
                held.update(job.job_id for job in leased.jobs)
                report = agent_pb2.ReportRequest(results=[_result(job) for job in leased.jobs])
                reporting.update(job.job_id for job in leased.jobs)
                answer = await _call(tally, tally.report_s, stub.ReportResults, report, metadata)
                reporting.difference_update(job.job_id for job in leased.jobs)
                if answer is None:
                    continue  # the leases lapse; the jobs come back
                for ack in answer.acks:
                    held.discard(ack.job_id)
                    if ack.accepted:
                        tally.accepted += not ack.duplicate
                        tally.per_agent[index] += not ack.duplicate
                        tally.duplicates += ack.duplicate
                    else:
                        tally.refused[ack.message] += 1
        finally:
            beating.cancel()


async def _per_call(address: str, token: str, calls: int, server_pid: int, url: str) -> dict[str, tuple[float, float]]:
    """CPU (s) of server process ``server_pid`` and of PostgreSQL for ``url``'s database (0 on SQLite) over
    ``calls`` sequential leases, heartbeats and reports of ``LEASE_JOBS`` jobs by one agent, by kind."""
    import grpc

    from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc

    tally = Tally()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        descriptor = agent_pb2.DeviceDescriptor(hostname="sim-0", formats=["onnx"])
        request = agent_pb2.RegisterRequest(enrollment_token=token, descriptor=descriptor, name="sim-0")
        reply = await _call(tally, None, stub.Register, request, None)
        metadata = (("authorization", f"Bearer {reply.credential}"),)
        lease = agent_pb2.LeaseRequest(max_jobs=LEASE_JOBS, wait_seconds=0, formats=["onnx"])
        await _call(tally, None, stub.Heartbeat, agent_pb2.HeartbeatRequest(), metadata)  # warm the caches
        cpu: dict[str, tuple[float, float]] = {}
        started = _cpu_s(server_pid, url)
        leased = [await _call(tally, None, stub.LeaseJobs, lease, metadata) for _ in range(calls)]
        cpu["lease"] = _since(started, server_pid, url)
        held = sorted(job.job_id for job in leased[0].jobs)
        started = _cpu_s(server_pid, url)
        for _ in range(calls):
            await _call(tally, None, stub.Heartbeat, agent_pb2.HeartbeatRequest(job_ids=held), metadata)
        cpu["heartbeat"] = _since(started, server_pid, url)
        started = _cpu_s(server_pid, url)
        for answer in leased:
            report = agent_pb2.ReportRequest(results=[_result(job) for job in answer.jobs])
            await _call(tally, None, stub.ReportResults, report, metadata)
        cpu["report"] = _since(started, server_pid, url)
    if tally.errors or sum(len(answer.jobs) for answer in leased) != LEASE_JOBS * calls:
        raise SystemExit(f"per-call run failed: {dict(tally.errors)}")
    return cpu


async def _run_agents(
    address: str, token: str, agents: int, jobs: int, limit_s: float, wait_s: float, server_pid: int
) -> tuple[Tally, float]:
    """Run ``agents`` until ``jobs`` results are accepted, at most ``limit_s`` (with no jobs: ``limit_s``, idle);
    each second, count the agents' connections held by each of ``server_pid``'s processes."""
    tally = Tally()
    done = asyncio.Event()
    started = time.perf_counter()
    tasks = [asyncio.create_task(_agent(address, token, i, tally, done, wait_s)) for i in range(agents)]
    port, sampled = int(address.rsplit(":", 1)[1]), started
    while (tally.accepted < jobs or not jobs) and time.perf_counter() - started < limit_s:
        await asyncio.sleep(0.05)
        if time.perf_counter() - sampled >= 1.0:
            sampled = time.perf_counter()
            pids = sorted(cpu_split.tree_cpu(cpu_split.processes(), server_pid))
            tally.split.append(connections.by_process(pids, port))
    elapsed = time.perf_counter() - started
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally, elapsed


def _seed(url: str, jobs: int, archs: int) -> tuple[int, str]:
    """A device, an enrollment token and ``jobs`` queued jobs (batches over ``archs`` distinct archs)."""
    from latfarm.predictor import nb201
    from latfarm.services.core.security import hash_secret, new_secret
    from latfarm.services.domain import batches
    from latfarm.services.domain.conditions import Conditions
    from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
    from latfarm.services.store.models import Device, Enrollment

    names = [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[:archs]]
    token = new_secret("lf_enroll")
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as session:
            device = Device(name="fleet-bench")
            session.add(device)
            session.flush()
            session.add(Enrollment(device_id=device.id, token_hash=hash_secret(token), created_by="bench"))
            left = jobs
            while left > 0:
                part = names[: min(left, len(names))]
                batches.submit_batch(session, device, part, conditions=Conditions(), requested_by="bench")
                left -= len(part)
            return device.id, token
    finally:
        engine.dispose()


def _pending_exports(url: str) -> int:
    from sqlalchemy import func, select

    from latfarm.services.store.db import make_engine
    from latfarm.services.store.models import Job, JobState

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).where(Job.state == JobState.queued, Job.artifact_sha256.is_(None))
            return conn.scalar(query) or 0
    finally:
        engine.dispose()


def exactly_once(url: str) -> dict[str, int]:
    """Jobs by state, measurements, and jobs measured other than once (must be 0)."""
    from sqlalchemy import func, select

    from latfarm.services.store.db import make_engine
    from latfarm.services.store.models import Job, Measurement

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            states = {state.value: n for state, n in conn.execute(select(Job.state, func.count()).group_by(Job.state))}
            per_job = select(Job.id, func.count(Measurement.id).label("n")).outerjoin(
                Measurement, Measurement.job_id == Job.id
            )
            counts = conn.execute(select(per_job.group_by(Job.id).subquery().c.n)).scalars().all()
            return {
                **states,
                "measurements": sum(counts),
                "jobs_not_measured_once": sum(1 for n in counts if n != 1),
            }
    finally:
        engine.dispose()


def _local(host: str) -> str:
    """The address to reach a server listening on ``host`` from this machine."""
    return "127.0.0.1" if host in ("[::]", "0.0.0.0", "::") else host


def _probe_healthz(base_url: str, every_s: float, stop, answers) -> None:
    """``GET /healthz`` every ``every_s`` seconds on one keep-alive connection until ``stop`` is set, then put
    the latencies (s) and the count of answers other than 200 on ``answers`` (runs in a process of its own, so the
    agents' event loop does not delay it)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies: list[float] = []
    failed = 0
    while not stop.wait(every_s):
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            failed += response.status != 200
        except OSError:
            failed += 1
            conn.close()
        latencies.append(time.perf_counter() - started)
    answers.put((latencies, failed))


def _start_server(
    url: str, redis: str | None, processes: int | None, data_dir: Path, log_path: Path
) -> tuple[subprocess.Popen, str, str]:
    """``latfarm serve`` on free ports: the process, its gRPC address and its REST base URL."""
    latfarm = str(Path(sys.executable).with_name("latfarm"))
    command = [latfarm, "serve", "--db", url, "--data-dir", str(data_dir), "--http-port", "0", "--grpc-port", "0"]
    if redis:
        command += ["--redis", redis]
    if processes is not None:
        command += ["--grpc-processes", str(processes)]
    log = log_path.open("w")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    assert server.stdout is not None
    rest = ""
    for line in server.stdout:
        if match := REST_LINE.search(line):
            rest = f"http://{_local(match.group(1))}:{match.group(2)}"
        elif match := GRPC_LINE.search(line):
            return server, f"{_local(match.group(1))}:{match.group(2)}", rest
    raise SystemExit(f"latfarm serve exited ({server.wait()}); see {log_path}")


def _cpu_s(pid: int, url: str) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds (user + system) so far, by pid, of process ``pid`` and its child processes (the server's gRPC
    processes; their threads included), and of PostgreSQL's processes for ``url``'s database (none on SQLite)."""
    from sqlalchemy.engine import make_url

    procs = cpu_split.processes()
    database = make_url(url).database or ""
    postgres = cpu_split.postgres_cpu(procs, database) if url.startswith("postgresql") else {}
    return cpu_split.tree_cpu(procs, pid), postgres


def _since(started: tuple[dict[int, float], dict[int, float]], pid: int, url: str) -> tuple[float, float]:
    """The server's and PostgreSQL's CPU seconds since ``started`` (``_cpu_s``)."""
    server, postgres = _cpu_s(pid, url)
    return cpu_split.delta(started[0], server), cpu_split.delta(started[1], postgres)


@dataclass
class CpuRead:
    """CPU seconds so far by role (``bench/cpu_split.py``): the server's processes and PostgreSQL's by pid, Redis
    (None: not asked or not answering), this process, the machine's busy CPUs; PostgreSQL's transactions; when
    (``time.monotonic``, s)."""

    server: dict[int, float]
    postgres: dict[int, float]
    redis: float | None
    bench: float
    machine: float
    pg_xacts: int | None
    at: float

    @classmethod
    def now(cls, server_pid: int, url: str, redis: str | None) -> CpuRead:
        server, postgres = _cpu_s(server_pid, url)
        return cls(
            server=server,
            postgres=postgres,
            redis=cpu_split.redis_cpu_s(redis) if redis else None,
            bench=time.process_time(),
            machine=cpu_split.machine_busy_s(),
            pg_xacts=_pg_xacts(url) if postgres else None,
            at=time.monotonic(),
        )


def _pg_xacts(url: str) -> int:
    """Transactions committed and rolled back in the database of ``url`` so far (``pg_stat_database``, as
    PostgreSQL's backends have reported them: within about a second)."""
    from sqlalchemy import text

    from latfarm.services.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            return int(conn.scalar(text(query)) or 0)
    finally:
        engine.dispose()


def _print_split(server_pid: int, before: CpuRead, after: CpuRead, results: int) -> None:
    """CPU seconds per 1,000 results by role, and cores, between two reads (the run and its agents' last calls)."""
    per_1000 = 1000 / max(results, 1)
    rows: list[tuple[str, float]] = []
    for pid, cpu in sorted(after.server.items()):
        role = "main" if pid == server_pid else "gRPC child"
        rows.append((f"server {role} {pid}", cpu - before.server.get(pid, 0.0)))
    if after.postgres:
        rows.append(("PostgreSQL (this database, background)", cpu_split.delta(before.postgres, after.postgres)))
    if after.redis is not None and before.redis is not None:
        rows.append(("Redis (whole server)", after.redis - before.redis))
    rows.append(("load generator (this process)", after.bench - before.bench))
    machine, window = after.machine - before.machine, after.at - before.at
    rows.append(("other (machine busy - the above)", machine - sum(cpu for _, cpu in rows)))
    print(f"CPU split per 1,000 results, and cores over {window:.1f} s (machine busy {machine / window:.2f} cores):")
    for name, cpu in rows:
        print(f"  {name:<40} {cpu * per_1000:6.2f} s  {cpu / window:5.2f} cores")
    if after.pg_xacts is not None and before.pg_xacts is not None:
        print(f"  PostgreSQL transactions per result     {(after.pg_xacts - before.pg_xacts) / max(results, 1):.2f}")


def _print_spread(tally: Tally, agents: int) -> None:
    """How the agents' connections were split between the server's processes (the least and most a process held
    in any second's sample) and how evenly the agents got results (min / p10 / median / p90 / max per agent)."""
    if tally.split:
        held = {pid: [sample.get(pid, 0) for sample in tally.split] for pid in tally.split[-1]}
        shares = ", ".join(f"{min(counts)}-{max(counts)}" for counts in held.values())
        print(f"connections per process  {shares}  (least-most in {len(tally.split)} samples)")
    per_agent = sorted(tally.per_agent.get(index, 0) for index in range(agents))
    if per_agent:
        picks = [per_agent[min(len(per_agent) - 1, int(q * len(per_agent)))] for q in (0, 0.1, 0.5, 0.9)]
        shown = " / ".join(map(str, picks + [per_agent[-1]]))
        print(f"results per agent        {shown}  (min / p10 / p50 / p90 / max)")


def main() -> None:
    """Parse arguments, run one load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--archs", type=int, default=16, help="distinct archs (models exported)")
    parser.add_argument("--db", help="SQLAlchemy URL of a PostgreSQL server (a database is created on it)")
    parser.add_argument("--redis", help="Redis URL for the server")
    parser.add_argument("--limit-s", type=float, default=300.0, help="stop the agents after this long")
    parser.add_argument("--wait-s", type=float, default=LEASE_WAIT_S, help="the agents' long-poll (s)")
    parser.add_argument("--grpc-processes", type=int, help="the server's gRPC processes (default: its default)")
    parser.add_argument("--calls", type=int, help="per-call server CPU: N sequential calls of each kind, one agent")
    parser.add_argument("--healthz-every-s", type=float, default=0.1, help="GET /healthz this often during the run")
    args = parser.parse_args()
    if args.calls:
        args.jobs = LEASE_JOBS * args.calls

    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        url = create_pg(args.db, "fleet_bench") if args.db else f"sqlite:///{tmp}/fleet.db"
        server = None
        try:
            subprocess.run([str(Path(sys.executable).with_name("latfarm")), "migrate", "--db", url], check=True)
            _, token = _seed(url, args.jobs, args.archs)
            server, address, rest = _start_server(
                url, args.redis, args.grpc_processes, Path(tmp) / "data", Path(tmp) / "serve.log"
            )
            deadline = time.monotonic() + 300
            while (pending := _pending_exports(url)) and time.monotonic() < deadline:
                time.sleep(1)
            if pending:
                raise SystemExit(f"{pending} jobs still wait for their artifact after 300 s")
            if args.calls:
                per_call = asyncio.run(_per_call(address, token, args.calls, server.pid, url))
                checked = exactly_once(url)
                print(f"CPU per call, ms ({args.calls} sequential calls each, 16 jobs per call, one agent):")
                print(f"  {'':<10} {'server':>8} {'PostgreSQL':>11}")
                for kind, (server_cpu, pg_cpu) in per_call.items():
                    print(f"  {kind:<10} {1000 * server_cpu / args.calls:8.2f} {1000 * pg_cpu / args.calls:11.2f}")
                return
            spawn = multiprocessing.get_context("spawn")
            stop_probe, answers = spawn.Event(), spawn.Queue()
            prober = spawn.Process(target=_probe_healthz, args=(rest, args.healthz_every_s, stop_probe, answers))
            prober.start()
            before = CpuRead.now(server.pid, url, args.redis)
            tally, elapsed = asyncio.run(
                _run_agents(address, token, args.agents, args.jobs, args.limit_s, args.wait_s, server.pid)
            )
            after = CpuRead.now(server.pid, url, args.redis)
            stop_probe.set()
            healthz_s, healthz_failed = answers.get(timeout=60)
            prober.join()
            checked = exactly_once(url)
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
            if args.db:
                drop_pg(args.db, url)
    backend = ("PostgreSQL" if args.db else "SQLite") + (" + Redis" if args.redis else "")
    errors = sum(tally.errors.values())
    if args.grpc_processes is not None:
        backend += f", {args.grpc_processes} gRPC processes"
    print(f"backend {backend}, {args.agents} agents, {args.jobs} jobs ({args.archs} archs), {os.cpu_count()} CPUs")
    print(f"results/s                {tally.accepted / elapsed:.0f}  ({tally.accepted} in {elapsed:.1f} s)")
    for name, samples in (("lease", tally.lease_s), ("lease with jobs", tally.leased_s)):
        p50, p99 = _quantile(samples, 0.5), _quantile(samples, 0.99)
        print(f"{name + ' p50 / p99':<24} {p50:.3f} s / {p99:.3f} s  ({len(samples)} calls)")
    print(f"heartbeat p99            {_quantile(tally.heartbeat_s, 0.99):.3f} s  ({len(tally.heartbeat_s)} heartbeats)")
    print(f"report p99               {_quantile(tally.report_s, 0.99):.3f} s")
    p50, p99 = _quantile(healthz_s, 0.5), _quantile(healthz_s, 0.99)
    print(f"healthz p50 / p99        {p50:.3f} s / {p99:.3f} s  ({len(healthz_s)} probes, {healthz_failed} not 200)")
    _print_spread(tally, args.agents)
    print(
        f"RPC errors               {errors}" + "".join(f"\n  {n} x {what}" for what, n in tally.errors.most_common(5))
    )
    print(
        f"busy refusals (retried)  {sum(tally.busy.values())}"
        + "".join(f"\n  {n} x {what}" for what, n in tally.busy.most_common(3))
    )
    per_1000 = 1000 / max(tally.accepted, 1)
    server_cpu, bench_cpu = cpu_split.delta(before.server, after.server), after.bench - before.bench
    print(
        f"CPU per 1,000 results    server {server_cpu * per_1000:.2f} s, agents {bench_cpu * per_1000:.2f} s "
        f"(server {server_cpu / elapsed:.2f} cores, {server_cpu:.1f} s in {elapsed:.0f} s)"
    )
    _print_split(server.pid, before, after, tally.accepted)
    print(f"refused acks             {sum(tally.refused.values())}  duplicates {tally.duplicates}  lost {tally.lost}")
    print(f"database                 {checked}")
    ok = checked["jobs_not_measured_once"] == 0 and checked.get("done", 0) == args.jobs
    print("exactly once             " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
