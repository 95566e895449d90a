"""In-process CPU of the agent calls: the gRPC servicer's handlers called directly (no gRPC), on a real database.

One registered agent of one device; each round leases ``--calls`` times 16 jobs (``LeaseJobs``, no wait), sends
``--calls`` heartbeats naming 16 held jobs, then reports each lease's 16 ok results (``ReportResults``), one call at
a time. Prints this process's CPU (``time.process_time``: the handlers, SQLAlchemy and the database driver; not the
database server's) in ms per call of each kind, the median over ``--rounds`` rounds and each round's figure.

    .venv/bin/python bench/agent_calls.py [--db URL] [--calls 100] [--rounds 5]

``--instructions``, under callgrind, counts the instructions this process runs instead (thousands per call): unlike
CPU time, the same on a busy machine, so small cuts show. Run it from a scratch folder (callgrind's dumps,
``callgrind.out.<pid>.<n>``, go there), e.g. ``valgrind --tool=callgrind python bench/agent_calls.py --instructions
--calls 10 --rounds 1`` (a few minutes; the first round is one of warm-up).

``--db postgresql+psycopg://postgres@127.0.0.1:5432/test`` creates a database ``agent_calls_<pid>`` on that server
for the run and drops it afterwards; without ``--db``: a SQLite file in a temporary folder. Seeds 16 × calls ×
rounds jobs. Measured figures: docs/fleet.md, "Tried and not adopted" / "How it got here".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch_db import create_pg, drop_pg  # bench/ is the script's folder: on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet import LEASE_JOBS, _result  # noqa: E402 - after the path; the fleet bench's ok result

CREDENTIAL = "lf_agent_bench"


class Context:
    """What the handlers ask of a gRPC call's context: a live call with the agent's credential and no deadline."""

    def invocation_metadata(self):
        return (("authorization", f"Bearer {CREDENTIAL}"),)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def add_callback(self, _callback) -> bool:
        return True

    def abort(self, code, details):
        raise SystemExit(f"call aborted: {code} {details}")


def _seed(sessions, jobs: int) -> None:
    """A device, its agent (credential ``CREDENTIAL``), one exported artifact and ``jobs`` queued jobs with it, in
    batches of up to a whole space (as a search submits them: their conditions are read once)."""
    from sqlalchemy import select, update

    from latfarm.predictor import nb201
    from latfarm.services.core.security import hash_secret
    from latfarm.services.domain import batches
    from latfarm.services.domain.conditions import Conditions
    from latfarm.services.store.db import transaction
    from latfarm.services.store.models import Agent, Artifact, Device, Job

    archs = [nb201.to_string(ops) for ops in nb201.enumerate_archs()]
    with transaction(sessions) as session:
        device = Device(name="calls-bench")
        session.add(device)
        session.flush()
        session.add(Agent(device_id=device.id, name="a", credential_hash=hash_secret(CREDENTIAL), state="idle"))
        for start in range(0, jobs, len(archs)):
            part = archs[: min(len(archs), jobs - start)]
            batches.submit_batch(session, device, part, conditions=Conditions(), requested_by="bench")
        sha = "0" * 64
        arch_id = session.scalar(select(Job.arch_id).limit(1))
        session.add(Artifact(sha256=sha, arch_id=arch_id, format="onnx", size_bytes=1))
        session.flush()
        session.execute(update(Job).values(artifact_sha256=sha))


class Cpu:
    """This process's CPU in ms from ``start`` to ``stop``."""

    def start(self) -> None:
        self.started = time.process_time()

    def stop(self) -> float:
        return 1000 * (time.process_time() - self.started)


class Instructions:
    """The instructions this process runs from ``start`` to ``stop``, in thousands, under callgrind: its counters are
    zeroed, then dumped and read back (``callgrind_control``)."""

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)

    def start(self) -> None:
        self._control("--zero")

    def stop(self) -> float:
        self._control("--dump")
        dumps = Path.cwd().glob(f"callgrind.out.{os.getpid()}.*")
        newest = max(dumps, key=lambda path: int(path.suffix[1:]))
        summary = next(line for line in newest.read_text().splitlines() if line.startswith("summary:"))
        return int(summary.split()[1]) / 1000


def _round(servicer, calls: int, meter: Cpu | Instructions) -> dict[str, float]:
    """``meter``'s figure per call of each kind over one round."""
    from latfarm.proto.v1 import agent_pb2

    context = Context()
    lease = agent_pb2.LeaseRequest(max_jobs=LEASE_JOBS, wait_seconds=0, formats=["onnx"])
    spent = {}
    meter.start()
    leased = [servicer.LeaseJobs(lease, context) for _ in range(calls)]
    spent["lease"] = meter.stop()
    if sum(len(answer.jobs) for answer in leased) != LEASE_JOBS * calls:
        raise SystemExit("too few jobs leased")
    held = agent_pb2.HeartbeatRequest(job_ids=sorted(job.job_id for job in leased[0].jobs))
    meter.start()
    for _ in range(calls):
        servicer.Heartbeat(held, context)
    spent["heartbeat"] = meter.stop()
    reports = [agent_pb2.ReportRequest(results=[_result(job) for job in answer.jobs]) for answer in leased]
    meter.start()
    answers = [servicer.ReportResults(report, context) for report in reports]
    spent["report"] = meter.stop()
    if not all(ack.accepted and not ack.duplicate for answer in answers for ack in answer.acks):
        raise SystemExit("a result was refused")
    return {kind: figure / calls for kind, figure in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="PostgreSQL URL of a server to create a scratch database on (default: SQLite)")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions (under callgrind), not CPU")
    args = parser.parse_args()
    meter = Instructions() if args.instructions else Cpu()
    rounds_run = args.rounds + args.instructions  # the first round under callgrind warms up, uncounted

    from latfarm.services.core.config import Settings
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.infra.throttle import AuthGuard
    from latfarm.services.infra.wakeups import LocalNotifier
    from latfarm.services.rpc.servicer import AgentServicer
    from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker
    from latfarm.services.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as folder:
        url = create_pg(args.db, "agent_calls") if args.db else f"sqlite:///{folder}/bench.db"
        try:
            upgrade(url)
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            _seed(sessions, LEASE_JOBS * args.calls * rounds_run)
            settings = Settings(data_dir=Path(folder), db_url=url)
            servicer = AgentServicer(
                settings,
                sessions,
                make_read_sessionmaker(engine),
                ArtifactStore(settings.artifacts_dir),
                LocalNotifier(),
                AuthGuard(settings.auth_failure_limit),
            )
            rounds = [_round(servicer, args.calls, meter) for _ in range(rounds_run)][-args.rounds :]
            engine.dispose()
        finally:
            if args.db:
                drop_pg(args.db, url)
    unit = "thousand instructions" if args.instructions else "CPU ms"
    print(f"in-process {unit} per call ({args.calls} calls of 16 jobs per round; median of {args.rounds} rounds):")
    for kind in rounds[0]:
        figures = [r[kind] for r in rounds]
        print(f"  {kind:<10} {statistics.median(figures):.2f}   ({', '.join(f'{f:.2f}' for f in figures)})")


if __name__ == "__main__":
    main()
