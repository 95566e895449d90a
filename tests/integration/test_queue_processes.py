"""Two server processes lease from one PostgreSQL queue and never take the same job."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import select

from latfarm.predictor import nb201
from latfarm.services.store.models import Job
from tests.queue_support import TinyArtifactStore, lease, make_agent, make_device, submit


def _lease_until_empty(url: str, agent_id: str, root: str, out, start) -> None:
    """Run in a separate process, as a second server replica would."""
    from latfarm.services.store.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        store = TinyArtifactStore(Path(root))
        start.wait(60)
        while got := lease(sessions, agent_id, store, max_jobs=2):
            out.put([j for j, *_ in got])
    finally:
        engine.dispose()
        out.put(None)


def test_two_processes_never_double_lease_on_postgres(pg_url, tmp_path):
    import multiprocessing

    from latfarm.services.store.db import make_engine, make_sessionmaker
    from latfarm.services.store.models import Base

    engine = make_engine(pg_url)
    try:
        Base.metadata.create_all(engine)
        sessions = make_sessionmaker(engine)
        dev = make_device(sessions)
        agents = [make_agent(sessions, dev) for _ in range(2)]
        submit(sessions, dev, [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[:60]])
        context = multiprocessing.get_context("spawn")
        out, start = context.Queue(), context.Barrier(2)
        root = str(tmp_path / "art")
        procs = [context.Process(target=_lease_until_empty, args=(pg_url, a, root, out, start)) for a in agents]
        for proc in procs:
            proc.start()
        leased, finished = [], 0
        while finished < len(procs):
            item = out.get(timeout=120)
            finished += item is None
            leased.extend(item or [])
        for proc in procs:
            proc.join(30)
        assert [p.exitcode for p in procs] == [0, 0]
        assert len(leased) == 60 and len(set(leased)) == 60
        with sessions() as s:
            owners = Counter(s.scalars(select(Job.lease_owner)))
        assert set(owners) == set(agents)  # both replicas took part
    finally:
        engine.dispose()
