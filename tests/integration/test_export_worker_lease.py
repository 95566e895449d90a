"""After the export worker ran, ``LeaseJobs`` on a real gRPC server exports nothing: the models are recorded."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from latfarm.proto.v1 import agent_pb2
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.db import make_read_sessionmaker
from latfarm.services.store.models import Artifact
from latfarm.services.workers.export_worker import ExportWorker
from tests.integration.test_rpc import register, start_farm, stop_farm
from tests.integration.test_rpc import submit as submit_rpc
from tests.queue_support import ARCHS


class CountingArtifactStore(ArtifactStore):
    """The real (torch) store, counting ``export_file`` calls."""

    calls = 0

    def export_file(self, arch: str, fmt: str, conditions=None):
        self.calls += 1
        return super().export_file(arch, fmt, conditions)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """The real artifact store, shared so that each model is exported by torch once."""
    return CountingArtifactStore(tmp_path_factory.mktemp("artifacts"))


def test_lease_after_the_worker_exports_nothing(sessions, real_store):
    notifier = make_notifier(None)
    farm = start_farm(sessions, real_store, notifier)
    try:
        _, md = register(farm)
        submit_rpc(farm, ARCHS[:3])
        read_sessions = make_read_sessionmaker(sessions.kw["bind"])
        assert ExportWorker(sessions, read_sessions, real_store, notifier).run_once() == 3
        calls = real_store.calls
        leased = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=3), metadata=md, timeout=30).jobs
        assert sorted(job.arch for job in leased) == sorted(ARCHS[:3])
        assert real_store.calls == calls
        with sessions() as s:
            artifacts = {a.sha256: a.arch.arch for a in s.scalars(select(Artifact))}
        assert {artifacts[job.artifact_sha256] for job in leased} == set(ARCHS[:3])
    finally:
        stop_farm(farm)
