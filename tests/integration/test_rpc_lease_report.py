"""A lease that carries the agent's last report (``LeaseRequest.report``), against a real server and database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from sqlalchemy import func, select

from latfarm.agents.main import run_agent
from latfarm.agents.measurement import MeasureSettings
from latfarm.agents.options import AgentOptions
from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.services.core.config import Settings
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.rpc.capacity import Kind
from latfarm.services.rpc.pool import CallPool, call_kind
from latfarm.services.rpc.servicer import CALL_KINDS, AgentServicer
from latfarm.services.store.db import make_read_sessionmaker
from latfarm.services.store.models import Job, JobState, Measurement
from tests.integration.test_rpc import ARCHS, lease_until, register, start_farm, stop_farm, submit
from tests.queue_support import TinyArtifactStore

QUICK = MeasureSettings(warmup_runs=1, runs_per_round=5, rounds=2, busy_warmup_s=0.1, spread_threshold=10.0)


@pytest.fixture
def farm(sessions, tmp_path):
    farm = start_farm(sessions, TinyArtifactStore(tmp_path / "artifacts"), make_notifier(None))
    yield farm
    stop_farm(farm)


def ok(job) -> agent_pb2.Result:
    stats = agent_pb2.Stats(
        median_ms=2.5, min_ms=2.4, runs=60, round_medians_ms=[2.5, 2.49, 2.52], latency_ms=2.4, statistic="min"
    )
    return agent_pb2.Result(job_id=job.job_id, ok=True, stats=stats, artifact_sha256=job.artifact_sha256)


def measurements(farm) -> dict[str, int]:
    """Stored measurements per job id."""
    with farm.sessions() as s:
        return dict(s.execute(select(Measurement.job_id, func.count()).group_by(Measurement.job_id)).all())


def test_a_lease_records_its_report_first_and_a_retry_is_acknowledged_once(farm):
    _, md = register(farm)
    submit(farm, ARCHS[:4])
    first = lease_until(farm, md, 2)
    report = agent_pb2.ReportRequest(results=[ok(job) for job in first], provenance=agent_pb2.Provenance(governor="x"))
    combined = agent_pb2.LeaseRequest(max_jobs=2, wait_seconds=20, report=report)
    answer = farm.stub.LeaseJobs(combined, metadata=md, timeout=30)
    assert [(a.job_id, a.accepted, a.duplicate) for a in answer.acks] == [(j.job_id, True, False) for j in first]
    assert len(answer.jobs) == 2 and not {j.job_id for j in answer.jobs} & {j.job_id for j in first}
    assert measurements(farm) == {job.job_id: 1 for job in first}

    # the answer was lost: the agent sends the same call again; nothing is stored twice, nothing is left to lease
    again = farm.stub.LeaseJobs(combined, metadata=md, timeout=30)
    assert [(a.job_id, a.accepted, a.duplicate) for a in again.acks] == [(j.job_id, True, True) for j in first]
    assert not again.jobs  # a lease carrying results answers at once, without waiting for work
    assert measurements(farm) == {job.job_id: 1 for job in first}
    with farm.sessions() as s:
        assert {s.get(Job, job.job_id).state for job in first} == {JobState.done}
        assert s.scalars(select(Measurement.provenance)).all() == [{"governor": "x"}] * 2


def test_old_style_calls_are_served_as_before(farm):
    """An agent from before ``LeaseRequest.report`` leases without it and reports with ``ReportResults``."""
    _, md = register(farm)
    submit(farm, ARCHS[:1])
    (job,) = lease_until(farm, md, 1)
    plain = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=30)
    assert not plain.jobs and not plain.acks
    acks = farm.stub.ReportResults(agent_pb2.ReportRequest(results=[ok(job)]), metadata=md, timeout=10).acks
    assert [(a.accepted, a.duplicate) for a in acks] == [(True, False)]
    assert measurements(farm) == {job.job_id: 1}


def test_a_refused_report_in_a_lease_is_refused_as_a_report_and_stores_nothing(farm):
    _, md = register(farm)
    submit(farm, ARCHS[:1])
    (job,) = lease_until(farm, md, 1)
    bad = ok(job)
    bad.error_message = "x" * 5000
    with pytest.raises(grpc.RpcError) as refused:
        farm.stub.LeaseJobs(
            agent_pb2.LeaseRequest(report=agent_pb2.ReportRequest(results=[bad])), metadata=md, timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "report.results[0].error_message" in (refused.value.details() or "")
    assert measurements(farm) == {}


@contextmanager
def own_server(farm, interceptors=(), **settings) -> Iterator[tuple[AgentServicer, str]]:
    """A second server over ``farm``'s database, store and notifier, built as ``build_grpc_server`` builds one but
    with ``interceptors``; yields its servicer (to hold its database slots) and address."""
    config = Settings(lease_seconds=30, heartbeat_interval_s=5, max_attempts=2, **settings)
    read_sessions = make_read_sessionmaker(farm.sessions.kw["bind"])
    guard = AuthGuard(config.auth_failure_limit)
    servicer = AgentServicer(config, farm.sessions, read_sessions, farm.store, farm.notifier, guard)
    workers = CallPool(config.grpc_workers, call_kind(servicer, CALL_KINDS))
    server = grpc.server(workers, interceptors=list(interceptors))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_a_lease_refused_after_its_report_was_stored_loses_nothing(farm):
    """No database slot for the lease (all that leases may hold are taken): the report is stored all the same and
    the call answers its acks and no jobs instead of RESOURCE_EXHAUSTED; a plain lease is refused then."""
    _, md = register(farm)
    submit(farm, ARCHS[:3])
    first = lease_until(farm, md, 2)
    report = agent_pb2.ReportRequest(results=[ok(job) for job in first])
    with own_server(farm, grpc_db_calls=2) as (servicer, address), grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        with servicer.capacity.slot(Kind.LEASE):  # all that leases may hold: a quarter of 2, one, is kept
            answer = stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1, report=report), metadata=md, timeout=3)
            with pytest.raises(grpc.RpcError) as busy:
                stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=3)
    assert [(a.job_id, a.accepted, a.duplicate) for a in answer.acks] == [(j.job_id, True, False) for j in first]
    assert not answer.jobs
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert measurements(farm) == {job.job_id: 1 for job in first}
    (last,) = lease_until(farm, md, 1)
    assert last.job_id not in {job.job_id for job in first}


def test_the_agent_reports_its_last_batch_with_its_next_lease(farm, tmp_path):
    """The real agent measures every job once; its batches' results go with its next leases (no ``ReportResults``
    call reaches the server), and the last batch's too before ``--once`` ends."""
    submit(farm, ARCHS[:5])
    calls: list[str] = []

    class Counting(grpc.ServerInterceptor):
        def intercept_service(self, continuation, details):
            calls.append(details.method.rsplit("/", 1)[1])
            return continuation(details)

    with own_server(farm, [Counting()]) as (_, address):
        run_agent(AgentOptions(address, farm.token, tmp_path / "agent", once=True, max_jobs=2, measure=QUICK))
    assert sorted(measurements(farm).values()) == [1] * 5
    assert "ReportResults" not in calls and calls.count("LeaseJobs") >= 4  # 2 + 2 + 1 jobs, then an empty lease


def test_the_agent_reports_alone_to_a_server_from_before_lease_reports(farm, tmp_path, capsys):
    """A server older than ``LeaseRequest.report`` ignores the field (answers no acks): the agent reports those
    results, and all later ones, with ``ReportResults``; every job is measured once."""
    submit(farm, ARCHS[:5])
    calls: list[str] = []

    class Older(grpc.ServerInterceptor):  # drops the field as a server built before it does (unknown field)
        def intercept_service(self, continuation, details):
            calls.append(method := details.method.rsplit("/", 1)[1])
            handler = continuation(details)
            if method != "LeaseJobs":
                return handler

            def lease(request, context):
                request.ClearField("report")
                return handler.unary_unary(request, context)

            return handler._replace(unary_unary=lease)

    with own_server(farm, [Older()]) as (_, address):
        run_agent(AgentOptions(address, farm.token, tmp_path / "agent", once=True, max_jobs=2, measure=QUICK))
    assert sorted(measurements(farm).values()) == [1] * 5
    assert calls.count("ReportResults") == 3  # one per batch: the first carried one again, then alone
    assert capsys.readouterr().err.count("does not take results with leases") == 1
