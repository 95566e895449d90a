"""#18 items 1 and 2: a fake agent on the generated stubs sends bogus and oversized messages to a real server."""

from __future__ import annotations

import threading

import grpc
import pytest
from sqlalchemy import func, select

from latfarm.agents.backends import available_backends
from latfarm.agents.cache import ArtifactCache
from latfarm.agents.connection import Connection
from latfarm.agents.loop import AgentLoop
from latfarm.agents.measurement import MeasureSettings
from latfarm.agents.options import AgentOptions
from latfarm.proto.v1 import agent_pb2
from latfarm.proto.v1.limits import LISTS, MAX_MESSAGE_BYTES
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.models import Job, JobState, Measurement
from tests.integration.test_rpc import DESCRIPTOR, code_of, start_farm, stop_farm, submit
from tests.queue_support import ARCHS, TinyArtifactStore


@pytest.fixture
def farm(sessions, tmp_path):
    farm = start_farm(sessions, TinyArtifactStore(tmp_path / "artifacts"), make_notifier(None))
    yield farm
    stop_farm(farm)


def fake_agent(farm) -> tuple[list[tuple[str, str]], list[agent_pb2.Job]]:
    """Register on the stubs and lease two jobs: (metadata, jobs)."""
    reply = farm.stub.Register(agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=DESCRIPTOR))
    md = [("authorization", f"Bearer {reply.credential}")]
    submit(farm, ARCHS[:2])
    jobs = list(farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=2), metadata=md, timeout=30).jobs)
    assert len(jobs) == 2
    return md, jobs


def result(job_id: str, **stats) -> agent_pb2.Result:
    """An ok result with sound figures, but for ``stats`` overrides."""
    figures = dict(median_ms=2.0, mean_ms=2.1, std_ms=0.1, min_ms=1.9, p90_ms=2.3, runs=30, latency_ms=1.9)
    figures.update(statistic="min", round_medians_ms=[2.0, 2.1, 1.95])
    return agent_pb2.Result(job_id=job_id, ok=True, stats=agent_pb2.Stats(**(figures | stats)))


def stored(farm) -> int:
    with farm.sessions() as s:
        return s.scalar(select(func.count()).select_from(Measurement)) or 0


def test_implausible_figures_are_refused_naming_result_and_field(farm):
    md, (job, other) = fake_agent(farm)
    bogus = [  # (the field named, the figures sent)
        ("stats.median_ms", dict(median_ms=1e308, p90_ms=0, latency_ms=0, mean_ms=0)),
        ("stats.latency_ms", dict(latency_ms=1e308)),  # the report: a sound median, an overflowing headline
        ("stats.latency_ms", dict(latency_ms=1e-300)),
        ("stats.min_ms", dict(min_ms=2.5)),  # min > median
        ("stats.median_ms", dict(p90_ms=1.0)),  # median > p90
        ("stats.mean_ms", dict(mean_ms=float("nan"))),
        ("stats.std_ms", dict(std_ms=-1.0)),
        ("stats.runs", dict(runs=-3)),
        ("stats.round_medians_ms", dict(round_medians_ms=[2.0, float("inf")])),
    ]
    for field, stats in bogus:
        request = agent_pb2.ReportRequest(results=[result(other.job_id), result(job.job_id, **stats)])
        code, details = code_of(lambda request=request: farm.stub.ReportResults(request, metadata=md, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, details)
        assert details.startswith(f"results[1].{field} (job {job.job_id}):"), details
    assert stored(farm) == 0  # the sound result in the same report was not stored either
    with farm.sessions() as s:  # the jobs are not lost: still leased to the agent, which may report again
        assert {j.state for j in s.scalars(select(Job))} == {JobState.running}
    request = agent_pb2.ReportRequest(results=[result(job.job_id), result(other.job_id)])
    acks = farm.stub.ReportResults(request, metadata=md, timeout=10).acks
    assert [a.accepted for a in acks] == [True, True] and stored(farm) == 2


def test_oversized_agent_data_is_refused_naming_the_field(farm):
    md, (job, _other) = fake_agent(farm)
    huge = agent_pb2.Result(job_id=job.job_id, error_class=agent_pb2.ERROR_CLASS_RUN, error_message="x" * 2001)
    calls = {
        "results[0].stats.round_medians_ms": agent_pb2.ReportRequest(
            results=[result(job.job_id, round_medians_ms=[2.0] * 1001)]
        ),
        "results[0].error_message": agent_pb2.ReportRequest(results=[huge]),
        "provenance.extra[k]": agent_pb2.ReportRequest(
            results=[result(job.job_id)], provenance=agent_pb2.Provenance(extra={"k": "v" * 1025})
        ),
        "provenance.extra": agent_pb2.ReportRequest(
            results=[result(job.job_id)], provenance=agent_pb2.Provenance(extra={str(i): "v" for i in range(65)})
        ),
        "results[0].runtime": agent_pb2.ReportRequest(results=[agent_pb2.Result(job_id=job.job_id, runtime="r" * 300)]),
        "descriptor.hostname": agent_pb2.HeartbeatRequest(descriptor=agent_pb2.DeviceDescriptor(hostname="h" * 300)),
        "descriptor.onnx_providers": agent_pb2.HeartbeatRequest(
            descriptor=agent_pb2.DeviceDescriptor(onnx_providers=["p"] * 65)
        ),
        "job_ids": agent_pb2.ReleaseRequest(job_ids=["j"] * 10_001),
    }
    for field, request in calls.items():
        method = {
            agent_pb2.ReportRequest: farm.stub.ReportResults,
            agent_pb2.HeartbeatRequest: farm.stub.Heartbeat,
            agent_pb2.ReleaseRequest: farm.stub.ReleaseJobs,
        }[type(request)]
        code, details = code_of(lambda method=method, request=request: method(request, metadata=md, timeout=10))
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, field), details
    register = agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=DESCRIPTOR, name="n" * 129)
    assert code_of(lambda: farm.stub.Register(register, timeout=10))[1].startswith("name: at most 128 characters")
    flood = agent_pb2.HeartbeatRequest(descriptor=agent_pb2.DeviceDescriptor(hostname="h" * (MAX_MESSAGE_BYTES + 1)))
    assert code_of(lambda: farm.stub.Heartbeat(flood, metadata=md, timeout=10))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored(farm) == 0
    with farm.sessions() as s:
        assert {j.state for j in s.scalars(select(Job))} == {JobState.running}


def test_a_cache_that_fails_mid_run_fails_the_jobs_with_an_error_class(farm, tmp_path):
    """#18 item 6: an OSError storing an artifact is reported as a fetch failure, so attempts count (max 2 here) and
    the jobs end failed instead of going back to the queue for ever."""
    submit(farm, ARCHS[:2])
    stop = threading.Event()
    conn = Connection(farm.address, stop)
    conn.credential = conn.register(farm.token, DESCRIPTOR, "pi").credential
    cache = ArtifactCache(tmp_path / "agent" / "cache", 1 << 20)
    cache.root.rmdir()
    cache.root.write_text("the folder was replaced by a file")
    options = AgentOptions(farm.address, state_dir=tmp_path / "agent", once=True)
    try:
        AgentLoop(conn, available_backends(None), cache, options, stop, 5.0).run()
    finally:
        conn.close()
    with farm.sessions() as s:
        jobs = s.scalars(select(Job)).all()
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.failed, 2)] * 2
    assert all("fetch failed" in (j.error or "") for j in jobs), [j.error for j in jobs]


def test_results_the_server_refuses_fail_their_jobs_instead_of_going_back_for_ever(farm, tmp_path):
    """#18 item 6: an agent whose settings make results the server refuses (here more round medians than a report
    may carry) reports each refused result as a run failure naming the server's reason: attempts count (max 2 here)
    and the jobs end failed, where the agent used to hand its batch back to be leased again for ever."""
    submit(farm, ARCHS[:2])
    stop = threading.Event()
    conn = Connection(farm.address, stop)
    conn.credential = conn.register(farm.token, DESCRIPTOR, "pi").credential
    too_many = LISTS["round_medians_ms"] + 1
    measure = MeasureSettings(warmup_runs=0, runs_per_round=1, rounds=too_many, busy_warmup_s=0, spread_threshold=1e9)
    options = AgentOptions(farm.address, state_dir=tmp_path / "agent", once=True, measure=measure)
    lines: list[str] = []
    give_up = threading.Timer(60, stop.set)  # an agent that hands its batch back would lease it again for ever
    give_up.start()
    try:
        cache = ArtifactCache(tmp_path / "agent" / "cache", 1 << 20)
        AgentLoop(conn, available_backends(None), cache, options, stop, 5.0, log=lines.append).run()
    finally:
        give_up.cancel()
        conn.close()
    with farm.sessions() as s:
        jobs = s.scalars(select(Job)).all()
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.failed, 2)] * 2, lines
    reason = f"result refused: results[0].stats.round_medians_ms: at most {LISTS['round_medians_ms']} items"
    assert all(reason in (j.error or "") for j in jobs), [j.error for j in jobs]
    assert stored(farm) == 0 and not any("handing the batch back" in line for line in lines), lines
