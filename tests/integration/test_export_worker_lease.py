"""After the export worker ran, ``LeaseJobs`` on a real gRPC server exports nothing: the models are recorded; it never
exports a TFLite model (``INLINE_FORMATS``), whose export by the worker wakes it."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from latfarm.proto.v1 import agent_pb2
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.db import make_read_sessionmaker, transaction
from latfarm.services.store.models import Artifact, Device
from latfarm.services.workers.export_worker import ExportWorker
from tests.integration.test_rpc import register, start_farm, stop_farm
from tests.integration.test_rpc import submit as submit_rpc
from tests.queue_support import ARCHS, TinyArtifactStore


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


class FormatCountingStore(TinyArtifactStore):
    """The tiny store, counting ``export_file`` calls per format (in any process)."""

    @property
    def calls(self) -> Counter[str]:
        return Counter(fmt for _, fmt, _ in self.exports())


def test_a_lease_leaves_tflite_exports_to_the_worker_and_its_export_wakes_the_lease(sessions, tmp_path):
    """A TFLite conversion outlasts an agent's lease deadline: the lease exports none, answers in time, and a
    long-polling lease is handed the job as soon as the export worker has exported it."""
    store = FormatCountingStore(tmp_path / "artifacts")
    notifier = make_notifier(None)
    farm = start_farm(sessions, store, notifier)
    try:
        with transaction(sessions) as s:
            s.get_one(Device, farm.device_id).runtime = "litert"  # its jobs: tflite
        descriptor = agent_pb2.DeviceDescriptor(hostname="pi-lite", formats=["tflite"])
        reply = farm.stub.Register(
            agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=descriptor, name="lite"), timeout=10
        )
        md = [("authorization", f"Bearer {reply.credential}")]
        submit_rpc(farm, ARCHS[:1])
        started = time.monotonic()
        request = agent_pb2.LeaseRequest(max_jobs=1, wait_seconds=1)
        assert not farm.stub.LeaseJobs(request, metadata=md, timeout=10).jobs
        assert time.monotonic() - started < 5 and not store.calls

        def lease() -> tuple[agent_pb2.LeaseResponse, float]:
            request = agent_pb2.LeaseRequest(max_jobs=1, wait_seconds=60)
            return farm.stub.LeaseJobs(request, metadata=md, timeout=70), time.monotonic()

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(lease)
            time.sleep(0.5)  # the lease is waiting
            read_sessions = make_read_sessionmaker(sessions.kw["bind"])
            assert ExportWorker(sessions, read_sessions, store, notifier).run_once() == 1  # in a conversion process
            exported_at = time.monotonic()
            by_worker = store.calls.copy()
            reply, answered_at = waiting.result(timeout=70)
            [job] = reply.jobs
        assert answered_at - exported_at < 5  # woken by the export, not at the end of its wait
        assert (job.arch, job.format) == (ARCHS[0], "tflite")
        assert store.calls == by_worker  # the lease exported nothing
    finally:
        stop_farm(farm)
