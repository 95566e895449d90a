"""The gRPC agent service against a real server on a free port, a real database and a real artifact file."""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import grpc
import onnx
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import delete, func, select

from latfarm.agents.connection import RETRYABLE, Connection, retry_after_s
from latfarm.agents.errors import AgentError
from latfarm.agents.main import run_agent
from latfarm.agents.measurement import MeasureSettings
from latfarm.agents.options import AgentOptions
from latfarm.agents.state import load_state
from latfarm.predictor import nb201
from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.services.core.clock import utcnow
from latfarm.services.core.config import Settings
from latfarm.services.core.security import hash_secret, new_secret
from latfarm.services.domain import batches, liveness
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.rpc.server import SERVICE_NAME, build_grpc_server
from latfarm.services.rpc.servicer import max_waiting
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker, transaction
from latfarm.services.store.models import Agent, Arch, Base, Device, Enrollment, Job, JobState, Measurement
from latfarm.services.workers.lease_sweeper import LeaseSweeper
from tests.net_support import CuttableLink
from tests.queue_support import ARCHS, DEFAULT, INPUT_SHAPE, TinyArtifactStore

BIG_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
DESCRIPTOR = agent_pb2.DeviceDescriptor(
    hostname="pi-1", cpu_model="Cortex-A76", cpu_cores=4, os="Linux", machine="aarch64", formats=["onnx"]
)


def enroll(sessions, name: str = "rpi5-cpu") -> tuple[int, str]:
    """A device and an enrollment token for it."""
    token = new_secret("lf_enroll")
    with transaction(sessions) as s:
        device = Device(name=name)
        s.add(device)
        s.flush()
        s.add(Enrollment(device_id=device.id, token_hash=hash_secret(token), created_by="owner-1"))
        return device.id, token


def start_farm(sessions, store, notifier, enrolled: tuple[int, str] | None = None, **settings):
    """A started server on a free port, its client stub, and an enrolled device."""
    settings = Settings(lease_seconds=30, heartbeat_interval_s=5, max_attempts=2, **settings)
    device_id, token = enrolled or enroll(sessions)
    read_sessions = make_read_sessionmaker(sessions.kw["bind"])
    server, port = build_grpc_server(settings, sessions, read_sessions, store, notifier, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return SimpleNamespace(
        server=server,
        address=f"127.0.0.1:{port}",
        channel=channel,
        stub=agent_pb2_grpc.AgentServiceStub(channel),
        store=store,
        token=token,
        device_id=device_id,
        sessions=sessions,
        notifier=notifier,
    )


def stop_farm(farm) -> None:
    farm.channel.close()
    farm.server.stop(None)
    farm.notifier.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The real artifact store (torch export), shared by the tests so each model is exported once."""
    return ArtifactStore(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def farm(sessions, artifacts):
    farm = start_farm(sessions, artifacts, make_notifier(None))
    yield farm
    stop_farm(farm)


def register(farm, name="pi-agent") -> tuple[str, list[tuple[str, str]]]:
    reply = farm.stub.Register(
        agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=DESCRIPTOR, name=name), timeout=10
    )
    return reply.agent_id, [("authorization", f"Bearer {reply.credential}")]


def submit(farm, archs=ARCHS[:3], protocol: dict | None = None) -> str:
    with transaction(farm.sessions) as s:
        device = s.get(Device, farm.device_id)
        batch_id = batches.submit_batch(s, device, archs, protocol=protocol, conditions=DEFAULT).id
    farm.notifier.notify(farm.device_id)
    return batch_id


def lease_until(farm, md, count: int, within_s: float = 120.0) -> list:
    """Lease until the agent of ``md`` holds ``count`` jobs: a lease hands out the jobs whose models are exported
    so far (``PREPARE_BUDGET_S``), which on a loaded machine may be fewer than were queued."""
    jobs: list = []
    deadline = time.monotonic() + within_s
    while len(jobs) < count and time.monotonic() < deadline:
        request = agent_pb2.LeaseRequest(max_jobs=count - len(jobs))
        jobs += farm.stub.LeaseJobs(request, metadata=md, timeout=60).jobs
    assert len(jobs) == count, f"leased {len(jobs)} of {count} jobs within {within_s:g} s"
    return jobs


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)
    return info.value.code(), info.value.details()


def test_an_agent_the_server_forgot_registers_again_with_its_token(farm, tmp_path, capsys):
    """A deleted agent (or a server with a new database) rejects the saved credential: ``--enroll`` registers anew,
    without it the agent exits saying so."""
    state_dir = tmp_path / "agent"
    run_agent(AgentOptions(farm.address, farm.token, state_dir, once=True))
    first = load_state(state_dir)
    with transaction(farm.sessions) as s:
        s.execute(delete(Agent).where(Agent.id == first.agent_id))
    with pytest.raises(
        AgentError,
        match="unknown agent credential.*to register anew, give an enrollment token as LATFARM_AGENT_ENROLL=TOKEN "
        "\\(or --enroll TOKEN\\) \\(latfarm device enroll DEVICE makes one\\)",
    ):
        run_agent(AgentOptions(farm.address, None, state_dir, once=True))
    run_agent(AgentOptions(farm.address, farm.token, state_dir, once=True))
    second = load_state(state_dir)
    assert second.agent_id != first.agent_id and second.device == first.device
    assert "no longer knows this agent" in capsys.readouterr().err
    with farm.sessions() as s:
        assert s.get(Agent, second.agent_id) is not None
    run_agent(AgentOptions(farm.address, farm.token, state_dir, once=True))  # known again: resumes, no new agent
    assert load_state(state_dir) == second


def test_a_restarted_agent_hands_back_its_earlier_runs_leases_at_once(farm, tmp_path, capsys):
    """Leases of an earlier run of the agent (same credential) end when the agent starts again, attempts not spent;
    a late report of that earlier run stores nothing twice."""
    state_dir = tmp_path / "agent"
    quick = MeasureSettings(warmup_runs=1, runs_per_round=3, rounds=2, busy_warmup_s=0.05, spread_threshold=10.0)
    run_agent(AgentOptions(farm.address, farm.token, state_dir, once=True, measure=quick))  # registers
    md = [("authorization", f"Bearer {load_state(state_dir).credential}")]
    submit(farm, ARCHS[:2])
    earlier = lease_until(farm, md, 2)  # then it died
    started = time.monotonic()
    run_agent(AgentOptions(farm.address, None, state_dir, once=True, measure=quick))
    assert time.monotonic() - started < 30  # the lease is 30 s: nothing waited for it to lapse
    assert "handed back 2 job(s) leased by an earlier run of this agent" in capsys.readouterr().err
    with farm.sessions() as s:
        jobs = [s.get(Job, j.job_id) for j in earlier]
        assert [(j.state, j.attempts) for j in jobs] == [(JobState.done, 1), (JobState.done, 1)]
    stats = agent_pb2.Stats(median_ms=2.5, mean_ms=2.6, std_ms=0.1, min_ms=2.4, p90_ms=2.7, runs=6)
    stats.round_medians_ms.extend([2.5, 2.5])
    stats.latency_ms, stats.statistic = 2.4, "min"
    late = agent_pb2.Result(job_id=earlier[0].job_id, ok=True, stats=stats, runtime="onnxruntime")
    (ack,) = farm.stub.ReportResults(agent_pb2.ReportRequest(results=[late]), metadata=md, timeout=10).acks
    assert ack.duplicate
    with farm.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Measurement)) == 2


def test_a_corrupt_artifact_is_rebuilt_and_its_jobs_still_end_measured(farm, tmp_path, caplog):
    """A truncated file is re-exported before it is served; one corrupted in place fails the agent's sha256 check,
    and its report makes the server rebuild it and queue the job again, the attempt not spent."""
    quick = MeasureSettings(warmup_runs=1, runs_per_round=3, rounds=2, busy_warmup_s=0.05, spread_threshold=10.0)
    archs = ARCHS[3:5]
    with transaction(farm.sessions) as s:
        rows = [s.get_one(Arch, arch_id) for arch_id in ensure_archs(s, archs).values()]
        shas = [farm.store.ensure(s, row, "onnx", DEFAULT).sha256 for row in rows]
    truncated, flipped = (farm.store.path(sha, "onnx") for sha in shas)
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(flipped.read_bytes())
    data[-8:] = bytes(8)  # same size, other bytes
    flipped.write_bytes(bytes(data))
    batch_id = submit(farm, archs)
    run_agent(AgentOptions(farm.address, farm.token, tmp_path / "agent", once=True, measure=quick))
    with farm.sessions() as s:
        jobs = s.scalars(select(Job).where(Job.batch_id == batch_id)).all()
        assert [(j.state, j.attempts) for j in jobs] == [(JobState.done, 1), (JobState.done, 1)], [
            j.error for j in jobs
        ]
    for sha, path in zip(shas, (truncated, flipped), strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    rebuilt = [r.getMessage() for r in caplog.records if "was corrupt on this server" in r.getMessage()]
    assert rebuilt == [f"artifact {shas[1][:12]} was corrupt on this server and is rebuilt"]  # the agent's report

    agent_id, md = register(farm, "liar")  # a fetch failure of a sound artifact spends the attempt
    submit(farm, ARCHS[5:6])
    (job,) = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=60).jobs
    failed = agent_pb2.Result(job_id=job.job_id, ok=False, error_class=agent_pb2.ERROR_CLASS_FETCH, error_message="x")
    (ack,) = farm.stub.ReportResults(agent_pb2.ReportRequest(results=[failed]), metadata=md, timeout=60).acks
    assert ack.accepted and ack.message == "job queued"
    with farm.sessions() as s:
        assert (s.get(Job, job.job_id).attempts, s.get(Job, job.job_id).error) == (1, "fetch: x")


def test_register_checks_token_and_descriptor(farm):
    def reg(token=farm.token, descriptor=DESCRIPTOR):
        request = agent_pb2.RegisterRequest(enrollment_token=token, name="x")
        if descriptor is not None:
            request.descriptor.CopyFrom(descriptor)
        return lambda: farm.stub.Register(request, timeout=10)

    assert code_of(reg(token="")) == (grpc.StatusCode.INVALID_ARGUMENT, "enrollment_token is required")
    assert code_of(reg(token="lf_enroll_wrong"))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(reg(descriptor=None)) == (grpc.StatusCode.INVALID_ARGUMENT, "descriptor is required")
    no_formats = agent_pb2.DeviceDescriptor(hostname="h")
    assert "descriptor.formats is empty" in code_of(reg(descriptor=no_formats))[1]
    bad_format = agent_pb2.DeviceDescriptor(hostname="h", formats=["tensorrt"])
    assert code_of(reg(descriptor=bad_format))[0] == grpc.StatusCode.INVALID_ARGUMENT

    agent_id, _ = register(farm)
    reply = farm.stub.Register(agent_pb2.RegisterRequest(enrollment_token=farm.token, descriptor=DESCRIPTOR))
    assert reply.device == "rpi5-cpu" and reply.heartbeat_interval_s == 5 and reply.lease_seconds == 30
    assert reply.credential.startswith("lf_agent_") and reply.agent_id != agent_id
    with farm.sessions() as s:
        agent = s.get(Agent, agent_id)
        enrollment = s.scalars(select(Enrollment)).one()
        assert (agent.device_id, agent.name, agent.owner, agent.state) == (
            farm.device_id,
            "pi-agent",
            "owner-1",
            "idle",
        )
        assert agent.descriptor["cpu_model"] == "Cortex-A76" and agent.descriptor["formats"] == ["onnx"]
        assert s.get(Agent, reply.agent_id).name == "pi-1"  # defaults to the hostname
        assert enrollment.uses == 2
        assert liveness.is_online(agent, 5)

    with transaction(farm.sessions) as s:
        s.scalars(select(Enrollment)).one().expires_at = utcnow() - timedelta(minutes=1)
    code, details = code_of(reg())
    assert code == grpc.StatusCode.PERMISSION_DENIED and "expired" in details
    with transaction(farm.sessions) as s:
        enrollment = s.scalars(select(Enrollment)).one()
        enrollment.expires_at, enrollment.revoked = None, True
    assert code_of(reg()) == (grpc.StatusCode.PERMISSION_DENIED, "enrollment token was revoked")


def test_an_enrollment_token_registers_at_most_max_uses_agents(farm):
    with transaction(farm.sessions) as s:
        s.scalars(select(Enrollment)).one().max_uses = 2
    register(farm, "a1")
    register(farm, "a2")
    code, details = code_of(lambda: register(farm, "a3"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and details == "enrollment token is used up (2 registrations)"
    with farm.sessions() as s:
        assert s.scalars(select(Enrollment)).one().uses == 2
        assert sorted(s.scalars(select(Agent.name))) == ["a1", "a2"]


@pytest.mark.parametrize(
    ("expired", "details"), [(True, "enrollment token expired at"), (False, "enrollment token was revoked")]
)
def test_an_agent_enrolling_with_an_expired_or_revoked_token_gets_one_line(farm, tmp_path, expired, details):
    """#14 case 5: the agent's error (printed as one line by the CLI) names the refusal and what to do."""
    with transaction(farm.sessions) as s:
        enrollment = s.scalars(select(Enrollment)).one()
        if expired:
            enrollment.expires_at = utcnow() - timedelta(minutes=1)
        else:
            enrollment.revoked = True
    with pytest.raises(AgentError) as info:
        run_agent(AgentOptions(farm.address, farm.token, tmp_path / "agent", once=True))
    message = str(info.value)
    assert message.startswith(f"the server refused the enrollment token ({details}")
    assert message.endswith(
        "a new one (latfarm device enroll DEVICE) and pass it as LATFARM_AGENT_ENROLL=TOKEN (or --enroll TOKEN)"
    )
    assert "\n" not in message and "POST /v1" not in message  # the command a person runs, not the endpoint
    assert load_state(tmp_path / "agent") is None


def test_an_unknown_enrollment_token_is_said_of_the_token_a_deleted_agent_of_the_agent(farm, tmp_path):
    """A token the server does not know is the token's fault; a credential it no longer knows (the agent deleted) is
    not, though the agent was started with a token."""
    with pytest.raises(AgentError, match=r"rejected the enrollment token \(register: unknown enrollment token\)"):
        run_agent(AgentOptions(farm.address, "lf_enroll_bogus", tmp_path / "bogus", once=True))
    state_dir = tmp_path / "agent"
    run_agent(AgentOptions(farm.address, farm.token, state_dir, once=True))
    with transaction(farm.sessions) as s:
        s.execute(delete(Agent).where(Agent.id == load_state(state_dir).agent_id))
    with pytest.raises(AgentError) as info:
        run_agent(AgentOptions(farm.address, None, state_dir, once=True))
    assert "an admin deleted it" in str(info.value) and "enrollment token (" not in str(info.value)


def test_every_call_needs_the_credential(farm):
    register(farm)
    calls = {
        "Heartbeat": lambda md: farm.stub.Heartbeat(agent_pb2.HeartbeatRequest(), metadata=md, timeout=10),
        "LeaseJobs": lambda md: farm.stub.LeaseJobs(agent_pb2.LeaseRequest(), metadata=md, timeout=10),
        "FetchArtifact": lambda md: farm.stub.FetchArtifact(
            agent_pb2.FetchArtifactRequest(sha256="0" * 64), metadata=md, timeout=10
        ),
        "ReportResults": lambda md: farm.stub.ReportResults(agent_pb2.ReportRequest(), metadata=md, timeout=10),
        "ReleaseJobs": lambda md: farm.stub.ReleaseJobs(agent_pb2.ReleaseRequest(), metadata=md, timeout=10),
    }
    for name, call in calls.items():
        for metadata in (
            [],
            [("authorization", "Bearer lf_agent_forged")],
            [("authorization", "Basic abc")],
            [("authorization", "Bearer  ")],
        ):
            code, details = code_of(lambda call=call, metadata=metadata: call(metadata))
            assert code == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, details)


def test_lease_fetch_heartbeat_report_release(farm):
    agent_id, md = register(farm)
    batch_id = submit(farm)
    leased = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=3), metadata=md, timeout=30)
    assert leased.lease_seconds == 30 and len(leased.jobs) == 3
    first, second, third = leased.jobs
    assert {j.arch for j in leased.jobs} == set(ARCHS[:3])
    assert (first.space, first.format, first.attempt, list(first.input_shape)) == ("nb201", "onnx", 1, INPUT_SHAPE)
    assert json_format.MessageToDict(first.conditions, preserving_proto_field_name=True) == DEFAULT.to_dict()

    data = b"".join(
        c.data
        for c in farm.stub.FetchArtifact(agent_pb2.FetchArtifactRequest(sha256=first.artifact_sha256), metadata=md)
    )
    assert len(data) == first.artifact_size and hashlib.sha256(data).hexdigest() == first.artifact_sha256
    model = onnx.load_model_from_string(data)
    assert {p.key: p.value for p in model.metadata_props}["latfarm.arch"] == first.arch

    beat = farm.stub.Heartbeat(
        agent_pb2.HeartbeatRequest(job_ids=[first.job_id, "gone"], state="measuring"), metadata=md, timeout=10
    )
    assert list(beat.lost_job_ids) == ["gone"] and beat.heartbeat_interval_s == 5

    stats = agent_pb2.Stats(median_ms=2.5, mean_ms=2.6, std_ms=0.1, min_ms=2.4, p90_ms=2.7, runs=100)
    stats.round_medians_ms.extend([2.5, 2.49, 2.52])
    stats.latency_ms, stats.statistic = 2.4, "min"  # the headline figure: the fastest timed run
    ok = agent_pb2.Result(
        job_id=first.job_id,
        ok=True,
        stats=stats,
        artifact_sha256=first.artifact_sha256,
        runtime="onnxruntime",
        runtime_version="1.32.0",
        provider="CPUExecutionProvider",
        threads=1,
        affinity=[2],
        settings=agent_pb2.MeasureSettings(rounds=5, runs_per_round=20, statistic="min"),
    )
    failed = agent_pb2.Result(
        job_id=second.job_id, ok=False, error_class=agent_pb2.ERROR_CLASS_LOAD, error_message="bad model"
    )
    request = agent_pb2.ReportRequest(results=[ok, failed], provenance=agent_pb2.Provenance(governor="performance"))
    acks = farm.stub.ReportResults(request, metadata=md, timeout=10).acks
    assert [(a.job_id, a.accepted, a.duplicate) for a in acks] == [
        (first.job_id, True, False),
        (second.job_id, True, False),
    ]
    again = farm.stub.ReportResults(agent_pb2.ReportRequest(results=[ok]), metadata=md, timeout=10).acks
    assert (again[0].accepted, again[0].duplicate) == (True, True)

    released = farm.stub.ReleaseJobs(agent_pb2.ReleaseRequest(job_ids=[third.job_id]), metadata=md, timeout=10)
    assert released.released == 1
    with farm.sessions() as s:
        measurement = s.scalars(select(Measurement)).one()
        progress = batches.batch_progress(s, batch_id)
        second_job = s.get(Job, second.job_id)
        assert s.get(Agent, agent_id).state == "measuring"
    assert (measurement.latency_ms, measurement.median_ms, measurement.min_ms) == (2.4, 2.5, 2.4)
    assert (measurement.runtime_version, measurement.provider) == ("1.32.0", "CPUExecutionProvider")
    assert measurement.protocol == {
        "rounds": 5,
        "runs_per_round": 20,
        "statistic": "min",
        "affinity": [2],
        "round_spread": 0.0,
    }
    assert measurement.provenance == {"governor": "performance"} and measurement.round_medians_ms == [2.5, 2.49, 2.52]
    assert (second_job.state, second_job.error) == (JobState.queued, "load: bad model")
    assert (progress["done"], progress["queued"], progress["running"]) == (1, 2, 0)


def test_an_agent_keeps_its_jobs_across_the_servers_connection_age_goaways(sessions, artifacts):
    """With ``grpc_max_connection_age_s`` = 1 the server sends each connection GOAWAY after about a second: the
    agent's channel reconnects on its own, a long-poll in flight when it comes finishes on the old connection, and
    no heartbeat fails or loses a job; the report is accepted once."""
    farm = start_farm(sessions, artifacts, make_notifier(None), grpc_max_connection_age_s=1)
    link = CuttableLink(int(farm.address.rsplit(":", 1)[1]))
    logged: list[str] = []
    conn = Connection(link.address, threading.Event(), log=logged.append)
    try:
        reply = conn.register(farm.token, DESCRIPTOR, "aging")
        conn.credential = reply.credential
        submit(farm)
        jobs: list = []
        while len(jobs) < 3:
            jobs += conn.lease(3 - len(jobs), 5, ["onnx"]).jobs
        held = sorted(job.job_id for job in jobs)
        assert conn.lease(1, 2.5, ["onnx"]).jobs == []  # a long-poll spanning a GOAWAY ends as it would
        started = time.monotonic()
        while time.monotonic() - started < 3:
            assert list(conn.heartbeat(held, "measuring").lost_job_ids) == []
            time.sleep(0.1)
        stats = agent_pb2.Stats(median_ms=2.5, mean_ms=2.6, std_ms=0.1, min_ms=2.4, p90_ms=2.7, runs=100)
        results = [
            agent_pb2.Result(job_id=job.job_id, ok=True, stats=stats, artifact_sha256=job.artifact_sha256)
            for job in jobs
        ]
        acks = conn.report(agent_pb2.ReportRequest(results=results)).acks
        assert [(a.accepted, a.duplicate) for a in acks] == [(True, False)] * 3
        assert link.accepted >= 4 and logged == [], (link.accepted, logged)  # reconnected, silently
        with farm.sessions() as s:
            states = s.scalars(select(Job.state).where(Job.id.in_(held))).all()
            measured = s.scalar(select(func.count()).select_from(Measurement).where(Measurement.job_id.in_(held)))
        assert (states, measured) == ([JobState.done] * 3, 3)
    finally:
        conn.close()
        link.close()
        stop_farm(farm)


def test_result_of_an_agent_without_latency_ms_stores_its_median(farm):
    """Agents from before ``Stats.latency_ms`` send 0 and no statistic: the median of round medians stands in."""
    _, md = register(farm)
    submit(farm, ARCHS[:1])
    (job,) = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=30).jobs
    stats = agent_pb2.Stats(median_ms=2.5, min_ms=2.4, runs=100, round_medians_ms=[2.5, 2.49, 2.52])
    old = agent_pb2.Result(job_id=job.job_id, ok=True, stats=stats, settings=agent_pb2.MeasureSettings(rounds=5))
    (ack,) = farm.stub.ReportResults(agent_pb2.ReportRequest(results=[old]), metadata=md, timeout=10).acks
    assert ack.accepted
    with farm.sessions() as s:
        measurement = s.scalars(select(Measurement)).one()
    assert (measurement.latency_ms, measurement.median_ms, measurement.protocol["statistic"]) == (2.5, 2.5, "median")


def test_leased_jobs_carry_their_batch_protocol(farm):
    _, md = register(farm)
    protocol = {
        "warmup_runs": 2,
        "runs_per_round": 20,
        "rounds": 3,
        "threads": 2,
        "timeout_s": 1.5,
        "statistic": "median",
    }
    submit(farm, ARCHS[:2], protocol=protocol)
    submit(farm, ARCHS[2:3], protocol={"rounds": 7})
    submit(farm, ARCHS[3:4])
    submit(farm, ARCHS[4:5], protocol={"warmup_runs": 0})
    jobs = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=5), metadata=md, timeout=30).jobs
    assert {j.arch: j.settings for j in jobs} == {
        ARCHS[0]: agent_pb2.MeasureSettings(**protocol),
        ARCHS[1]: agent_pb2.MeasureSettings(**protocol),
        ARCHS[2]: agent_pb2.MeasureSettings(rounds=7),
        ARCHS[3]: agent_pb2.MeasureSettings(),  # no protocol: every field 0 / "", the agent's own options
        ARCHS[4]: agent_pb2.MeasureSettings(warmup_runs=0),
    }
    settings = {j.arch: j.settings for j in jobs}
    assert settings[ARCHS[4]].HasField("warmup_runs") and not settings[ARCHS[3]].HasField("warmup_runs")


def test_bad_messages_get_invalid_argument(farm):
    _, md = register(farm)
    bad = {
        "negative max_jobs": lambda: farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=-1), metadata=md, timeout=10),
        "unknown format": lambda: farm.stub.LeaseJobs(agent_pb2.LeaseRequest(formats=["x"]), metadata=md, timeout=10),
        "negative wait": lambda: farm.stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=-1), metadata=md, timeout=10),
        "endless wait": lambda: farm.stub.LeaseJobs(
            agent_pb2.LeaseRequest(wait_seconds=float("inf")), metadata=md, timeout=10
        ),
        "bad sha": lambda: farm.stub.FetchArtifact(agent_pb2.FetchArtifactRequest(sha256="abc"), metadata=md),
        "bad state": lambda: farm.stub.Heartbeat(agent_pb2.HeartbeatRequest(state="asleep"), metadata=md, timeout=10),
        "zero median": lambda: farm.stub.ReportResults(
            agent_pb2.ReportRequest(results=[agent_pb2.Result(job_id="j", ok=True)]), metadata=md, timeout=10
        ),
        "latency without statistic": lambda: farm.stub.ReportResults(
            agent_pb2.ReportRequest(
                results=[agent_pb2.Result(job_id="j", ok=True, stats=agent_pb2.Stats(median_ms=2.0, latency_ms=1.9))]
            ),
            metadata=md,
            timeout=10,
        ),
    }
    for what, call in bad.items():
        code, details = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details, what
    assert "max_jobs must be at least 0, got -1" in code_of(bad["negative max_jobs"])[1]  # the API's wording
    assert "wait_seconds must be at least 0 and less than inf, got -1" in code_of(bad["negative wait"])[1]
    assert "wait_seconds must be at least 0 and less than inf, got inf" in code_of(bad["endless wait"])[1]
    missing = agent_pb2.FetchArtifactRequest(sha256="ab" * 32)
    assert code_of(lambda: farm.stub.FetchArtifact(missing, metadata=md))[0] == grpc.StatusCode.NOT_FOUND


def test_big_artifact_streams_in_chunks_and_resumes(farm):
    _, md = register(farm)
    submit(farm, [BIG_ARCH])
    (job,) = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=1), metadata=md, timeout=30).jobs
    assert job.artifact_size > 3 * 2**20
    chunks = list(farm.stub.FetchArtifact(agent_pb2.FetchArtifactRequest(sha256=job.artifact_sha256), metadata=md))
    assert len(chunks) >= 4 and all(c.total_size == job.artifact_size for c in chunks)
    assert [c.offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
    data = b"".join(c.data for c in chunks)
    assert hashlib.sha256(data).hexdigest() == job.artifact_sha256
    resume_at = len(data) - 12345
    tail = farm.stub.FetchArtifact(
        agent_pb2.FetchArtifactRequest(sha256=job.artifact_sha256, offset=resume_at), metadata=md
    )
    assert b"".join(c.data for c in tail) == data[resume_at:]
    past_end = agent_pb2.FetchArtifactRequest(sha256=job.artifact_sha256, offset=len(data) + 1)
    assert code_of(lambda: farm.stub.FetchArtifact(past_end, metadata=md))[0] == grpc.StatusCode.OUT_OF_RANGE


@pytest.mark.parametrize("shared", [False, True], ids=["local", "redis"])
def test_long_poll_wakes_when_a_batch_arrives(sessions, artifacts, request, shared):
    """With Redis the batch is announced through a second notifier, as by another server replica."""
    redis_url = request.getfixturevalue("redis_url") if shared else None
    farm = start_farm(sessions, artifacts, make_notifier(redis_url))
    announcer = make_notifier(redis_url) if shared else farm.notifier
    try:
        _, md = register(farm)
        start = time.monotonic()
        empty = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=0.5), metadata=md, timeout=10)
        assert list(empty.jobs) == [] and time.monotonic() - start >= 0.45
        with ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            waiting = pool.submit(farm.stub.LeaseJobs, agent_pb2.LeaseRequest(wait_seconds=60), metadata=md, timeout=90)
            time.sleep(0.5)
            assert not waiting.done()
            with transaction(sessions) as s:
                batches.submit_batch(s, s.get(Device, farm.device_id), ARCHS[:2], conditions=DEFAULT)
            announcer.notify(farm.device_id)
            reply = waiting.result(timeout=90)
        # woken, not timed out: well inside the 60 s long-poll, though the lease exports both models first (seconds
        # on a loaded machine)
        assert len(reply.jobs) == 2 and time.monotonic() - start < 30
    finally:
        stop_farm(farm)
        announcer.close()


def test_health_reports_serving(farm):
    health = health_pb2_grpc.HealthStub(farm.channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _listening_addresses(port: int) -> set[str]:
    """The addresses of the sockets listening on ``port`` (IPv4-mapped IPv6 ones as IPv4), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hex_address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(hex_address)  # 32-bit words in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found


@pytest.mark.parametrize(("host", "addresses"), [("127.0.0.1", {"127.0.0.1"}), ("0.0.0.0", {"::"})])
def test_the_grpc_port_binds_the_configured_host(sessions, artifacts, host, addresses):
    farm = start_farm(sessions, artifacts, make_notifier(None), grpc_host=host)
    try:
        port = int(farm.address.rsplit(":", 1)[1])
        assert _listening_addresses(port) == addresses  # "::": every interface, IPv4 and IPv6
        test_health_reports_serving(farm)
    finally:
        stop_farm(farm)


def test_sweeper_requeues_lapsed_leases_and_wakes_agents(farm):
    agent_id, md = register(farm)
    submit(farm, ARCHS[:2])
    leased = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=2), metadata=md, timeout=30).jobs
    with transaction(farm.sessions) as s:
        for job in s.scalars(select(Job)):
            job.lease_expires_at = utcnow() - timedelta(seconds=1)
    seen = farm.notifier.version(farm.device_id)
    sweeper = LeaseSweeper(farm.sessions, farm.notifier, lease_seconds=30, max_attempts=2)
    assert sweeper.run_once() == 2
    assert farm.notifier.version(farm.device_id) > seen
    with farm.sessions() as s:
        assert batches.queue_depth(s)["queued"] == 2
    lost = farm.stub.Heartbeat(agent_pb2.HeartbeatRequest(job_ids=[j.job_id for j in leased]), metadata=md)
    assert sorted(lost.lost_job_ids) == sorted(j.job_id for j in leased)


def test_two_replicas_serve_the_same_agents_without_double_leasing(pg_url, redis_url, tmp_path):
    """Two servers, each with its own engine, on one PostgreSQL database and one Redis."""
    engines = [make_engine(pg_url) for _ in range(2)]
    replicas = []
    try:
        Base.metadata.create_all(engines[0])
        enrolled = enroll(make_sessionmaker(engines[0]))
        for i, engine in enumerate(engines):
            sessions = make_sessionmaker(engine)
            store = TinyArtifactStore(tmp_path / f"r{i}")  # 40 models: the tiny store keeps this fast
            replicas.append(start_farm(sessions, store, make_notifier(redis_url), enrolled))
        a, b = replicas
        _, md = register(a)
        assert b.stub.Heartbeat(agent_pb2.HeartbeatRequest(state="idle"), metadata=md, timeout=10).heartbeat_interval_s
        archs = [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[:40]]
        with transaction(b.sessions) as s:
            batches.submit_batch(s, s.get(Device, b.device_id), archs, conditions=DEFAULT)

        def drain(stub) -> list[str]:
            got = []
            while jobs := stub.LeaseJobs(agent_pb2.LeaseRequest(max_jobs=3), metadata=md, timeout=30).jobs:
                got.extend(j.job_id for j in jobs)
            return got

        with ThreadPoolExecutor(4) as pool:
            leased = [job_id for got in pool.map(drain, [a.stub, b.stub, a.stub, b.stub]) for job_id in got]
        assert len(leased) == 40 and len(set(leased)) == 40
    finally:
        for farm in replicas:
            stop_farm(farm)
        for engine in engines:
            engine.dispose()


def test_a_cancelled_long_poll_leases_nothing(farm):
    _, md = register(farm)
    waiting = farm.stub.LeaseJobs.future(agent_pb2.LeaseRequest(wait_seconds=20), metadata=md, timeout=30)
    time.sleep(0.3)
    waiting.cancel()
    batch_id = submit(farm, ARCHS[:2])  # wakes the abandoned long-poll
    time.sleep(1.0)
    with farm.sessions() as s:
        progress = batches.batch_progress(s, batch_id)
        attempts = set(s.scalars(select(Job.attempts)))
    assert (progress["queued"], progress["running"], attempts) == (2, 0, {0})


def test_a_stopping_server_ends_its_long_polls_at_once(sessions, artifacts):
    """A long-poll waits for work without reading the database, yet ends with the call: a server stopping with
    30 s long-polls open stops within its grace, and their threads come back."""
    farm = start_farm(sessions, artifacts, make_notifier(None))
    try:
        _, md = register(farm)
        waiting = farm.stub.LeaseJobs.future(agent_pb2.LeaseRequest(wait_seconds=30), metadata=md, timeout=40)
        time.sleep(0.5)
        started = time.monotonic()
        farm.server.stop(0.5).wait(10)
        assert time.monotonic() - started < 3
        with pytest.raises(grpc.RpcError):
            waiting.result(timeout=5)
        deadline = time.monotonic() + 5
        while farm.notifier.waiting():
            assert time.monotonic() < deadline, "a long-poll thread still waits"
            time.sleep(0.05)
    finally:
        stop_farm(farm)


def test_waiting_agents_cannot_take_every_thread(sessions, artifacts):
    """Long-polls beyond the limit are refused (agents retry with backoff): reports and heartbeats keep a reserve."""
    farm = start_farm(sessions, artifacts, make_notifier(None), grpc_workers=6)
    try:
        assert max_waiting(6) == 2
        _, md = register(farm)
        waiting = [
            farm.stub.LeaseJobs.future(agent_pb2.LeaseRequest(wait_seconds=20), metadata=md, timeout=30)
            for _ in range(2)
        ]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as refused:
            farm.stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=5), metadata=md, timeout=10)
        code, message = refused.value.code(), refused.value.details()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "agents wait for work already" in message
        assert code in RETRYABLE  # the agent asks again after the server's hint (1 s, with jitter)
        assert dict(refused.value.trailing_metadata())["retry-after-ms"] == "1000"
        assert 1.0 <= (retry_after_s(refused.value) or 0) <= 1.5
        farm.stub.Heartbeat(agent_pb2.HeartbeatRequest(), metadata=md, timeout=5)  # the reserve answers
        assert not farm.stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=0), metadata=md, timeout=5).jobs
        logged: list[str] = []
        agent = Connection(farm.address, threading.Event(), md[0][1].removeprefix("Bearer "), log=logged.append)
        with ThreadPoolExecutor(1) as pool:
            agent_lease = pool.submit(agent.lease, 1, 1.0, ["onnx"])  # refused, retried after each hint
            time.sleep(1.5)
            assert not agent_lease.done()
            submit(farm, ARCHS[:1])  # wakes the waiting long-polls: one of them takes the job and frees its slot
            deadline = time.monotonic() + 30
            while not any(f.done() for f in waiting):
                assert time.monotonic() < deadline, "no long-poll took the job"
                time.sleep(0.05)
            assert [len(f.result().jobs) for f in waiting if f.done()] == [1]
            assert not agent_lease.result(timeout=10).jobs  # let in once a slot was free; nothing left
        agent.close()
        assert logged == []  # a busy server's hint is flow control: nothing logged as a failure
        again = farm.stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=1), metadata=md, timeout=10)
        assert not again.jobs  # accepted again, and nothing left to lease
        for future in waiting:
            future.cancel()
    finally:
        stop_farm(farm)
