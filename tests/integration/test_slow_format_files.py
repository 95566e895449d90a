"""A file in a slow format (outside ``INLINE_FORMATS``) is never exported inside an agent's call, against a real gRPC
server and real agents: a fetch of a file this replica lacks answers UNAVAILABLE at once (the agent fetches again),
the report of a corrupt one queues its job again, and the export worker makes the file in its conversion processes,
after which the job is measured. A conversion process that dies fails only its own jobs, with the reason.

``QuickTfliteStore`` makes the slow path observable without litert-torch: its TFLite files are ONNX bytes, measured
by the agent's onnxruntime backend, and it logs every conversion with the process that ran it.
"""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest
from sqlalchemy import select

from latfarm.agents.backends.onnx import OnnxBackend
from latfarm.agents.cache import ArtifactCache
from latfarm.agents.connection import Connection
from latfarm.agents.loop import AgentLoop
from latfarm.agents.measurement import MeasureSettings
from latfarm.agents.options import AgentOptions
from latfarm.proto.v1 import agent_pb2
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.db import make_read_sessionmaker, transaction
from latfarm.services.store.models import Arch, Device, Job, JobState, Measurement
from latfarm.services.workers.export_worker import ExportWorker
from tests.integration.test_rpc import code_of, start_farm, stop_farm
from tests.integration.test_rpc import submit as submit_rpc
from tests.queue_support import ARCHS, QuickTfliteStore, logged_exports

pytestmark = pytest.mark.timeout(300)

QUICK = MeasureSettings(warmup_runs=1, runs_per_round=3, rounds=2, busy_warmup_s=0.05, spread_threshold=10.0)
DESCRIPTOR = agent_pb2.DeviceDescriptor(hostname="pi-lite", formats=["tflite"])
CALL_DEADLINE_S = 10.0  # well under a conversion (20-60 s with litert-torch), with room for a loaded machine


@pytest.fixture
def farm(sessions, tmp_path):
    """A gRPC server on the quick store, its device measured in TFLite, and an export worker with 2 processes."""
    (tmp_path / "artifacts").mkdir()
    farm = start_farm(sessions, QuickTfliteStore(tmp_path / "artifacts"), make_notifier(None))
    with transaction(sessions) as s:
        s.get_one(Device, farm.device_id).runtime = "litert"  # its jobs: tflite
    read_sessions = make_read_sessionmaker(sessions.kw["bind"])
    farm.worker = ExportWorker(sessions, read_sessions, farm.store, farm.notifier, poll_s=0.2, processes=2)
    yield farm
    farm.worker.stop()
    stop_farm(farm)


def prober(farm) -> list[tuple[str, str]]:
    """The metadata of a registered agent that makes single calls."""
    request = agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=DESCRIPTOR, name="prober")
    return [("authorization", f"Bearer {farm.stub.Register(request, timeout=10).credential}")]


def jobs_of(farm, batch_id: str) -> list[Job]:
    with farm.sessions() as s:
        return list(s.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.id)))


def measure_all(farm, tmp_path) -> list[str]:
    """Run a real agent (onnxruntime for the quick TFLite files) until the queue is empty; its log."""
    stop = threading.Event()
    give_up = threading.Timer(180, stop.set)  # a fetch that never succeeds would retry for ever
    conn = Connection(farm.address, stop)
    lines: list[str] = []
    conn.credential = conn.register(farm.token, DESCRIPTOR, "lite").credential
    cache = ArtifactCache(tmp_path / "agent" / "cache", 1 << 30)
    options = AgentOptions(farm.address, state_dir=tmp_path / "agent", once=True, measure=QUICK)
    give_up.start()
    try:
        AgentLoop(conn, {"tflite": OnnxBackend()}, cache, options, stop, 5.0, log=lines.append).run()
    finally:
        give_up.cancel()
        conn.close()
    assert not stop.is_set(), "the agent gave up:\n" + "\n".join(lines)
    return lines


def assert_measured(farm, batch_id: str) -> None:
    jobs = jobs_of(farm, batch_id)
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.done, 1)] * len(jobs), [j.error for j in jobs]
    with farm.sessions() as s:
        measured = s.scalars(select(Measurement.job_id).where(Measurement.job_id.in_([j.id for j in jobs]))).all()
    assert sorted(measured) == sorted(j.id for j in jobs)


def test_a_fetch_of_a_missing_slow_file_answers_at_once_and_the_worker_makes_it(farm, tmp_path):
    batch_id = submit_rpc(farm, ARCHS[:2])
    assert farm.worker.run_once() == 2
    exported = logged_exports(farm.store.root)
    assert {(arch, fmt) for arch, fmt, _ in exported} == {(arch, "tflite") for arch in ARCHS[:2]}
    assert os.getpid() not in {pid for *_, pid in exported}  # converted in the worker's processes
    shas = [job.artifact_sha256 for job in jobs_of(farm, batch_id)]
    for sha in shas:  # this replica lacks the files (another one exported them, or its disk was replaced)
        farm.store.path(sha, "tflite").unlink()

    md = prober(farm)
    started = time.monotonic()
    code, details = code_of(
        lambda: farm.stub.FetchArtifact(
            agent_pb2.FetchArtifactRequest(sha256=shas[0]), metadata=md, timeout=CALL_DEADLINE_S
        )
    )
    assert code == grpc.StatusCode.UNAVAILABLE and "export worker" in details, details
    assert time.monotonic() - started < CALL_DEADLINE_S
    assert logged_exports(farm.store.root) == exported  # the call converted nothing
    assert farm.store.requested() == [shas[0]]

    farm.worker.start()
    measure_all(farm, tmp_path)
    assert_measured(farm, batch_id)
    restored = logged_exports(farm.store.root)[len(exported) :]
    assert sorted(arch for arch, *_ in restored) == sorted(ARCHS[:2])
    assert os.getpid() not in {pid for *_, pid in restored}
    assert farm.store.requested() == []


def test_the_report_of_a_corrupt_slow_file_answers_at_once_and_its_job_is_measured_after_the_worker(farm, tmp_path):
    batch_id = submit_rpc(farm, ARCHS[2:3])
    assert farm.worker.run_once() == 1
    exported = logged_exports(farm.store.root)
    md = prober(farm)
    (job,) = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=30).jobs
    path = farm.store.path(job.artifact_sha256, "tflite")
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(8)  # corrupt in place: same size, other bytes
    path.write_bytes(bytes(data))

    failed = agent_pb2.Result(
        job_id=job.job_id, ok=False, error_class=agent_pb2.ERROR_CLASS_FETCH, error_message="sha256 mismatch"
    )
    started = time.monotonic()
    (ack,) = farm.stub.ReportResults(
        agent_pb2.ReportRequest(results=[failed]), metadata=md, timeout=CALL_DEADLINE_S
    ).acks
    assert time.monotonic() - started < CALL_DEADLINE_S
    assert ack.accepted and ack.message == "artifact rebuilt on the server: job queued again"
    assert logged_exports(farm.store.root) == exported  # the report converted nothing
    assert farm.store.requested() == [job.artifact_sha256]
    assert [(j.state, j.attempts) for j in jobs_of(farm, batch_id)] == [(JobState.queued, 0)]  # attempt not spent

    farm.worker.start()
    measure_all(farm, tmp_path)
    assert_measured(farm, batch_id)
    assert [arch for arch, _, pid in logged_exports(farm.store.root)[len(exported) :] if pid != os.getpid()] == [
        ARCHS[2]
    ]


def test_a_crashed_conversion_fails_only_its_jobs_and_a_fetch_waiting_for_it_hears_why(farm):
    archs = ARCHS[3:7]
    (farm.store.root / "crash_archs").write_text(archs[1])
    batch_id = submit_rpc(farm, archs)
    assert farm.worker.run_once() + farm.worker.run_once() == 3  # a sweep converts one model per process
    with farm.sessions() as s:
        states = {
            arch: (job.state, job.error, job.artifact_sha256 is not None)
            for job, arch in s.execute(select(Job, Arch.arch).join(Arch).where(Job.batch_id == batch_id))
        }
    crashed = "artifact export failed: ConversionCrashed: the conversion process died (exit code -9)"
    assert states == {arch: (JobState.queued, None, True) for arch in archs if arch != archs[1]} | {
        archs[1]: (JobState.failed, crashed, False)
    }
    pids = {pid for *_, pid in logged_exports(farm.store.root)}
    assert os.getpid() not in pids and len(pids) >= 2  # several conversion processes (and one that died)

    sha = next(j.artifact_sha256 for j in jobs_of(farm, batch_id) if j.artifact_sha256)
    with farm.sessions() as s:
        arch = s.scalar(select(Arch.arch).join(Job).where(Job.artifact_sha256 == sha))
    (farm.store.root / "crash_archs").write_text(arch)  # its file goes missing, and making it again crashes
    farm.store.path(sha, "tflite").unlink()
    md = prober(farm)
    fetch = agent_pb2.FetchArtifactRequest(sha256=sha)
    call = lambda: farm.stub.FetchArtifact(fetch, metadata=md, timeout=CALL_DEADLINE_S)  # noqa: E731
    assert code_of(call)[0] == grpc.StatusCode.UNAVAILABLE
    assert farm.worker.run_once() == 0
    code, details = code_of(call)
    assert code == grpc.StatusCode.INTERNAL  # not retried: the agent reports a fetch failure, its attempt spent
    assert details.endswith(f"could not be exported on this server: {crashed.split(': ', 1)[1]}"), details


def test_a_stop_ends_a_conversion_in_progress_and_fails_nothing(farm):
    (farm.store.root / "slow_archs").write_text(ARCHS[7])
    batch_id = submit_rpc(farm, ARCHS[7:8])
    farm.worker.start()
    deadline = time.monotonic() + 60
    while not logged_exports(farm.store.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    [(_, _, pid)] = logged_exports(farm.store.root)  # converting, for SLOW_S
    started = time.monotonic()
    farm.worker.stop()
    assert time.monotonic() - started < 10 and not farm.worker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the conversion process is gone
    assert [(j.state, j.error, j.artifact_sha256) for j in jobs_of(farm, batch_id)] == [(JobState.queued, None, None)]
