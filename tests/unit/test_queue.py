"""The DB job queue on SQLite and PostgreSQL: submit, lease, heartbeat, expiry, attempts, reports, release."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from latfarm.predictor import nb201
from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.core.errors import FailedPrecondition
from latfarm.services.domain import batches, job_artifacts, liveness, queue, reports
from latfarm.services.domain.batches import QueueError
from latfarm.services.domain.results import ReportedResult, ResultError
from latfarm.services.store.db import make_engine, make_sessionmaker, transaction
from latfarm.services.store.models import Agent, Artifact, Base, Device, Job, JobState, Measurement
from tests.queue_support import ARCHS, DEFAULT, TinyArtifactStore, lease, make_agent, make_device, submit


def ok_result(job_id: str, median: float = 1.5, **kw) -> ReportedResult:
    base = dict(
        mean_ms=1.6,
        std_ms=0.1,
        min_ms=1.4,
        p90_ms=1.7,
        runs=30,
        round_medians_ms=[1.5, 1.49, 1.52],
        runtime="onnxruntime",
    )
    return ReportedResult(job_id=job_id, ok=True, median_ms=median, **{**base, **kw})


def fail_result(job_id: str) -> ReportedResult:
    return ReportedResult(job_id=job_id, ok=False, error_class="run", error_message="inference raised")


def report(sessions, agent_id, results, max_attempts=3):
    with transaction(sessions) as s:
        return reports.report(s, s.get(Agent, agent_id), results, {"governor": "performance"}, max_attempts)


def job(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


@pytest.fixture
def store(tmp_path):
    return TinyArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def pg_sessions(pg_url):
    """A sessionmaker on a fresh PostgreSQL schema: row locks (SQLite has one writer lock instead)."""
    engine = make_engine(pg_url)
    Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_submit_validates_and_dedupes(sessions):
    dev = make_device(sessions)
    with pytest.raises(QueueError, match="nor_conv_9x9"):
        submit(sessions, dev, [ARCHS[0], "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
    with pytest.raises(QueueError, match="format"):
        submit(sessions, dev, ARCHS, fmt="tensorrt")
    with pytest.raises(QueueError, match="non-empty"):
        submit(sessions, dev, [])
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    batch_id = submit(sessions, dev, [ARCHS[0], ARCHS[1], " " + ARCHS[0]])
    with sessions() as s:
        progress = batches.batch_progress(s, batch_id)
        assert batches.batch_progress(s, "nope") is None
    assert progress["device"] == "dev-a" and progress["format"] == "onnx"
    assert (progress["total"], progress["queued"], progress["running"], progress["done"]) == (2, 2, 0, 0)
    assert progress["errors"] == []


def test_a_device_runtime_sets_its_jobs_format(sessions):
    """No format: the runtime's; another: refused naming the field (the device's state refuses it, 409 over REST);
    a dataset's runtime label fixes none."""
    lite, onnx_dev = make_device(sessions, "dev-lite", runtime="litert"), make_device(sessions)
    imported = make_device(sessions, "dev-imported", runtime="tensorrt")
    formats = {}
    for device, fmt in [(lite, None), (lite, "tflite"), (onnx_dev, None), (imported, None), (imported, "tflite")]:
        with sessions() as s:
            formats[device, fmt] = batches.batch_progress(s, submit(sessions, device, ARCHS[:1], fmt=fmt))["format"]
    assert list(formats.values()) == ["tflite", "tflite", "onnx", "onnx", "tflite"]
    with pytest.raises(FailedPrecondition) as refused:
        submit(sessions, lite, ARCHS[:1], fmt="onnx")
    assert (refused.value.field, str(refused.value)) == (
        "format",
        "format: litert devices are measured in tflite models, not onnx: omit the format, or measure onnx models "
        "on a device of runtime onnxruntime",
    )
    with pytest.raises(FailedPrecondition, match="^format: onnxruntime devices are measured in onnx models, not"):
        submit(sessions, onnx_dev, ARCHS[:1], fmt="tflite")


def test_lease_takes_oldest_of_own_device_and_format(sessions, store):
    dev, other = make_device(sessions), make_device(sessions, "dev-b")
    lite = make_device(sessions, "dev-lite", runtime="litert")  # its jobs: tflite
    agent, lite_agent = make_agent(sessions, dev), make_agent(sessions, lite)
    submit(sessions, other, ARCHS[:3])
    submit(sessions, lite, ARCHS[:2])
    submit(sessions, dev, ARCHS[:6])
    with sessions() as s:
        pending = job_artifacts.pending_artifacts(s, dev, ["onnx"], 10)
        assert sorted(model.arch for model in pending) == sorted(ARCHS[:6])
        assert len(job_artifacts.pending_artifacts(s, dev, ["onnx", "tflite"], 4)) == 4
        assert job_artifacts.pending_artifacts(s, lite, ["onnx"], 10) == []
    first = lease(sessions, agent, store, max_jobs=4)
    assert len(first) == 4 and all(sha and attempts == 1 for _, _, sha, attempts in first)
    assert {arch for _, arch, _, _ in first} <= set(ARCHS[:6])
    assert (store.root / first[0][2]).exists()
    second = lease(sessions, agent, store, max_jobs=4)
    assert len(second) == 2 and not {j for j, *_ in first} & {j for j, *_ in second}
    assert lease(sessions, agent, store, max_jobs=4) == []
    with sessions() as s:
        assert job_artifacts.pending_artifacts(s, dev, ["onnx"], 10) == []
    assert lease(sessions, lite_agent, store, max_jobs=4) == []  # an agent without LiteRT: onnx only
    assert len(lease(sessions, lite_agent, store, max_jobs=4, formats=("tflite", "bogus"))) == 2
    with sessions() as s:
        depth = batches.queue_depth(s)
        assert s.get(Agent, agent).last_heartbeat is not None
    assert depth == {"queued": 3, "running": 8, "done": 0, "failed": 0, "cancelled": 0}


def test_heartbeat_extends_and_expiry_requeues(sessions, store):
    dev = make_device(sessions)
    a, b = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:2])
    t0 = utcnow()
    (j1, *_), (j2, *_) = lease(sessions, a, store, max_jobs=2, lease_seconds=10, now=t0)
    with transaction(sessions) as s:
        lost = queue.heartbeat(s, s.get(Agent, a), [j1, "unknown-job"], 10, now=t0 + timedelta(seconds=8))
    assert lost == ["unknown-job"]
    with transaction(sessions) as s:  # j2 lapsed at t0+10, j1 was extended to t0+18
        assert queue.requeue_expired(s, max_attempts=3, now=t0 + timedelta(seconds=12)) == 1
    requeued = job(sessions, j2)
    assert requeued.state == JobState.queued and requeued.lease_owner is None
    assert requeued.error == "lease expired 1 time" and requeued.attempts == 1
    got = lease(sessions, b, store, max_jobs=5, now=t0 + timedelta(seconds=13))
    assert [(j, n) for j, _, _, n in got] == [(j2, 2)]
    with transaction(sessions) as s:
        assert queue.heartbeat(s, s.get(Agent, a), [j1, j2], 10, now=t0 + timedelta(seconds=14)) == [j2]
    acks = report(sessions, a, [ok_result(j2)])
    assert not acks[0].accepted and "not leased by this agent" in acks[0].message
    assert report(sessions, b, [ok_result(j2)])[0].accepted


def test_expired_leases_fail_after_max_attempts(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    batch = submit(sessions, dev, ARCHS[:1])
    now = utcnow()
    for attempt in range(1, 4):
        leased = lease(sessions, agent, store, lease_seconds=5, now=now)
        assert [n for *_, n in leased] == [attempt]
        now += timedelta(seconds=6)
    assert lease(sessions, agent, store, now=now) == []  # the third lapse is requeued first, then failed
    with sessions() as s:
        progress = batches.batch_progress(s, batch)
    assert progress["failed"] == 1
    assert progress["errors"] == [{"arch": ARCHS[0], "error": "lease expired 3 times"}]


def test_failure_reports_retry_then_fail_with_reason(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:1])
    for attempt in (1, 2):
        ((job_id, _, _, attempts),) = lease(sessions, agent, store)
        assert attempts == attempt
        ack = report(sessions, agent, [fail_result(job_id)])[0]
        assert ack.accepted and ack.message == "job queued"
        assert job(sessions, job_id).error == "run: inference raised"
    ((job_id, _, _, attempts),) = lease(sessions, agent, store)
    assert attempts == 3
    assert report(sessions, agent, [fail_result(job_id)])[0].message == "job failed"
    failed = job(sessions, job_id)
    assert failed.state == JobState.failed and failed.finished_at is not None
    assert failed.error == "failed after 3 attempts; last: run: inference raised"


def test_ok_report_stored_once_and_only_from_lease_holder(sessions, store):
    dev = make_device(sessions)
    agent, intruder = make_agent(sessions, dev), make_agent(sessions, dev)
    batch = submit(sessions, dev, ARCHS[:2])
    (j1, _, sha1, _), (j2, *_) = lease(sessions, agent, store, max_jobs=2)
    assert not report(sessions, intruder, [ok_result(j1)])[0].accepted
    new_style = ok_result(j1, latency_ms=1.4, statistic="min", affinity=[0], settings={"rounds": 3, "statistic": "min"})
    old_style = ok_result(j2, unstable=True)  # an agent from before Stats.latency_ms: latency_ms 0, no statistic
    acks = report(sessions, agent, [new_style, old_style])
    assert [(a.accepted, a.duplicate) for a in acks] == [(True, False), (True, False)]
    assert "unstable" in acks[1].message
    again = report(sessions, agent, [ok_result(j1), ReportedResult(job_id="missing", ok=True, median_ms=1.0)])
    assert (again[0].accepted, again[0].duplicate) == (True, True)
    assert (again[1].accepted, again[1].message) == (False, "unknown job")
    assert not report(sessions, intruder, [ok_result(j1)])[0].accepted
    with sessions() as s:
        rows = s.scalars(select(Measurement).order_by(Measurement.job_id)).all()
        progress = batches.batch_progress(s, batch)
    by_job = {m.job_id: m for m in rows}
    assert len(rows) == 2 and set(by_job) == {j1, j2}
    first = by_job[j1]
    assert (first.latency_ms, first.median_ms, first.agent_id, first.artifact_sha256) == (1.4, 1.5, agent, sha1)
    assert first.protocol == {"rounds": 3, "statistic": "min", "affinity": [0]} and not first.unstable
    assert first.provenance == {"governor": "performance"}
    assert first.round_medians_ms == [1.5, 1.49, 1.52]
    assert by_job[j2].unstable is True
    assert (by_job[j2].latency_ms, by_job[j2].median_ms, by_job[j2].protocol["statistic"]) == (1.5, 1.5, "median")
    assert progress["done"] == 2 and job(sessions, j1).state == JobState.done
    assert all(m.conditions == DEFAULT.to_dict() and m.conditions_key == DEFAULT.key for m in rows)


def test_batch_conditions_reach_artifacts_and_rows(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    batch_4 = DEFAULT.merged({"batch_size": 4, "precision": "int8"})
    batch = submit(sessions, dev, ARCHS[:1], conditions=batch_4)
    (job_id, _, sha, _), *_ = lease(sessions, agent, store)
    assert report(sessions, agent, [ok_result(job_id)])[0].accepted
    with sessions() as s:
        row = s.scalars(select(Measurement)).one()
        artifact = s.get(Artifact, sha)
        assert batches.batch_progress(s, batch)["conditions"] == {"key": batch_4.key, **batch_4.to_dict()}
    assert artifact.settings["input_shape"] == [4, 3, 32, 32]
    assert (row.conditions, row.conditions_key) == (batch_4.to_dict(), "nb201/32px/10cls/b4/int8/reference")
    with pytest.raises(QueueError, match="space"), transaction(sessions) as s:
        batches.submit_batch(s, s.get(Device, dev), ARCHS[:1], space="other", conditions=DEFAULT)


def test_malformed_result_rejected_before_writing(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:1])
    ((job_id, *_),) = lease(sessions, agent, store)
    with pytest.raises(ResultError, match="median_ms"):
        report(sessions, agent, [ok_result(job_id, median=0.0)])
    with pytest.raises(ResultError, match="p90_ms"):
        report(sessions, agent, [ok_result(job_id, p90_ms=float("nan"))])
    with pytest.raises(ResultError, match="latency_ms"):
        report(sessions, agent, [ok_result(job_id, latency_ms=float("inf"), statistic="min")])
    for statistic in ("", "mean"):  # a headline figure must say how it was computed
        with pytest.raises(ResultError, match="statistic"):
            report(sessions, agent, [ok_result(job_id, latency_ms=1.4, statistic=statistic)])
    assert job(sessions, job_id).state == JobState.running


def test_release_returns_jobs_without_counting_the_attempt(sessions, store):
    dev = make_device(sessions)
    agent, other = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:3])
    mine = [j for j, *_ in lease(sessions, agent, store, max_jobs=2)]
    theirs = [j for j, *_ in lease(sessions, other, store, max_jobs=2)]
    with transaction(sessions) as s:
        assert queue.release(s, s.get(Agent, agent), mine + theirs) == 2
    assert all(job(sessions, j).state == JobState.queued and job(sessions, j).attempts == 0 for j in mine)
    assert job(sessions, theirs[0]).state == JobState.running
    assert sorted(n for *_, n in lease(sessions, other, store, max_jobs=5)) == [1, 1]


def test_export_failure_fails_the_job_with_reason(sessions, tmp_path):
    store = TinyArtifactStore(tmp_path / "a", fail_archs=frozenset({ARCHS[0]}))
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    batch = submit(sessions, dev, ARCHS[:2])
    assert [arch for _, arch, _, _ in lease(sessions, agent, store)] == [ARCHS[1]]
    with sessions() as s:
        errors = batches.batch_progress(s, batch)["errors"]
    assert errors == [{"arch": ARCHS[0], "error": f"artifact export failed: RuntimeError: cannot export {ARCHS[0]}"}]


def test_concurrent_leasing_never_double_leases(sessions, store):
    dev = make_device(sessions)
    agents = [make_agent(sessions, dev) for _ in range(4)]
    archs = [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[:120]]
    submit(sessions, dev, archs)
    leased: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(agent_id: str) -> None:
        try:
            while got := lease(sessions, agent_id, store, max_jobs=3):
                with lock:
                    leased.extend(j for j, *_ in got)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(leased) == 120 and max(Counter(leased).values()) == 1
    with sessions() as s:
        owners = Counter(s.scalars(select(Job.lease_owner)))
        assert batches.queue_depth(s)["running"] == 120
    assert sum(owners.values()) == 120 and set(owners) <= set(agents)


def test_concurrent_repeats_of_a_report_store_it_once(sessions, store):
    """An agent retrying a report while the first call still runs (or naming a job twice) gets one row."""
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:4])
    leased = [j for j, *_ in lease(sessions, agent, store)]
    start = threading.Barrier(4)
    acks, errors = [], []

    def send() -> None:
        try:
            start.wait(10)
            acks.extend(report(sessions, agent, [ok_result(j) for j in leased] + [ok_result(leased[0])]))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert all(a.accepted for a in acks) and len(acks) == 4 * 5
    assert sum(not a.duplicate for a in acks) == 4  # each job stored by exactly one call
    with sessions() as s:
        assert sorted(s.scalars(select(Measurement.job_id))) == sorted(leased)


def test_cancelled_jobs_are_never_leased_and_their_reports_are_refused(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    batch = submit(sessions, dev, ARCHS[:4])
    leased = [j for j, *_ in lease(sessions, agent, store, max_jobs=1)]
    with transaction(sessions) as s:
        assert batches.cancel_batch(s, batch) == 4
    assert lease(sessions, agent, store, max_jobs=10) == []
    with transaction(sessions) as s:
        assert queue.heartbeat(s, s.get(Agent, agent), leased, 30) == leased  # the agent drops the job
    ack = report(sessions, agent, [ok_result(leased[0])])[0]
    assert not ack.accepted and ack.message == "job was cancelled"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Measurement)) == 0
        assert batches.batch_progress(s, batch)["cancelled"] == 4


def test_waiting_for_agent_counts_queued_jobs_of_devices_without_an_online_agent(sessions, store):
    covered, uncovered = make_device(sessions, "covered"), make_device(sessions, "uncovered")
    agent = make_agent(sessions, covered)
    submit(sessions, covered, ARCHS[:3])
    submit(sessions, uncovered, ARCHS[:2])
    lease(sessions, agent, store, max_jobs=1)  # a lease is a heartbeat: the agent is online now
    with sessions() as s:
        assert batches.waiting_for_agent(s, utcnow() - timedelta(seconds=60)) == 2
        assert batches.waiting_for_agent(s, utcnow() + timedelta(seconds=1)) == 4  # nobody online: all queued wait


def test_release_all_hands_back_every_job_the_agent_holds(sessions, store):
    dev = make_device(sessions)
    agent, other = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:5])
    mine = [j for j, *_ in lease(sessions, agent, store, max_jobs=3)]
    theirs = [j for j, *_ in lease(sessions, other, store, max_jobs=1)]
    with transaction(sessions) as s:
        assert queue.release_all(s, s.get(Agent, agent)) == 3
    assert all(job(sessions, j).state == JobState.queued and job(sessions, j).attempts == 0 for j in mine)
    assert job(sessions, theirs[0]).state == JobState.running


def test_a_report_in_any_order_acks_in_its_order_and_stores_a_repeated_job_once(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:3])
    ids = [j for j, *_ in lease(sessions, agent, store, max_jobs=3)]
    reverse = [ok_result(ids[2]), ok_result(ids[1]), ok_result(ids[2]), fail_result(ids[0])]
    acks = report(sessions, agent, reverse)
    assert [(a.job_id, a.accepted, a.duplicate) for a in acks] == [
        (ids[2], True, False),
        (ids[1], True, False),
        (ids[2], True, True),
        (ids[0], True, False),
    ]
    with sessions() as s:
        assert sorted(s.scalars(select(Measurement.job_id))) == sorted(ids[1:])
    assert job(sessions, ids[0]).state == JobState.queued


def test_a_heartbeat_rewrites_only_leases_that_need_it(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:2])
    t0 = utcnow()
    (j1, *_), (j2, *_) = lease(sessions, agent, store, max_jobs=2, lease_seconds=100, now=t0)
    leased_until = job(sessions, j1).lease_expires_at
    with transaction(sessions) as s:  # within RENEW_SLACK of a full lease: left alone
        queue.heartbeat(s, s.get(Agent, agent), [j1, j2], 100, now=t0 + timedelta(seconds=5))
    assert job(sessions, j1).lease_expires_at == leased_until
    later = t0 + timedelta(seconds=50)
    with transaction(sessions) as s:
        assert queue.heartbeat(s, s.get(Agent, agent), [j2, j1], 100, now=later) == []
        assert s.get(Agent, agent).last_heartbeat is not None
    expected = (later + timedelta(seconds=100)).replace(tzinfo=None)
    assert {job(sessions, j).lease_expires_at.replace(tzinfo=None) for j in (j1, j2)} == {expected}


def test_reports_and_heartbeats_of_jobs_in_opposite_orders_never_deadlock(sessions, store):
    """Each report names its jobs newest first while heartbeats name them oldest first, at the same time."""
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    rounds, errors = 15, []
    archs = [nb201.to_string(ops) for ops in list(nb201.enumerate_archs())[: rounds * 4]]
    submit(sessions, dev, archs)
    leased = [j for j, *_ in lease(sessions, agent, store, max_jobs=len(archs))]

    def beat() -> None:
        try:
            for _ in range(rounds * 2):
                with transaction(sessions) as s:
                    queue.heartbeat(s, s.get(Agent, agent), leased, 30, now=utcnow() + timedelta(seconds=10))
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        for start in range(0, len(leased), 4):
            chunk = leased[start : start + 4]
            assert all(a.accepted for a in report(sessions, agent, [ok_result(j) for j in reversed(chunk)]))
    finally:
        beater.join(60)
    assert errors == []
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Measurement)) == len(leased)


def test_leases_and_heartbeats_mark_the_agent_alive_and_agent_calls_refuse_a_removed_one(sessions, store):
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:1])
    t0 = utcnow().replace(microsecond=0)
    ref = liveness.AgentRef(agent, dev)
    with transaction(sessions) as s:
        assert queue.heartbeat(s, ref, [], 30, now=t0, state="measuring", descriptor={"formats": ["onnx"]}) == []
    with sessions() as s:
        row = s.get(Agent, agent)
        assert (row.state, row.descriptor, as_utc(row.last_heartbeat)) == ("measuring", {"formats": ["onnx"]}, t0)
    (leased,) = lease(sessions, agent, store, now=t0 + timedelta(seconds=3))
    with sessions() as s:
        assert as_utc(s.get(Agent, agent).last_heartbeat) == t0 + timedelta(seconds=3)
    with transaction(sessions) as s:
        s.delete(s.get(Agent, agent))
    for call in (
        lambda s: queue.lease(s, ref, max_jobs=1, formats=["onnx"], lease_seconds=30),
        lambda s: queue.heartbeat(s, ref, [leased[0]], 30),
        lambda s: liveness.registered(s, agent),
        lambda s: reports.report(s, ref, [ok_result(leased[0])], {}, 3),  # checked in the statement locking the job
        lambda s: reports.report(s, ref, [ok_result("missing")], {}, 3),  # no job row: checked on its own
        lambda s: queue.requeue_repaired(s, ref, [leased[0]]),
    ):
        with pytest.raises(liveness.UnknownAgent), transaction(sessions) as s:
            call(s)


def test_a_lease_picks_in_lease_order_with_statistics_from_before_the_exports(sessions, store):
    """The pick reads a device's jobs ready to lease in lease order (``ix_jobs_ready`` on PostgreSQL), also when the
    statistics were taken before any job was exported: PostgreSQL then expected no ready job and read and sorted
    every queued job of the device, per lease."""
    dev = make_device(sessions)
    agent_id = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS)
    with transaction(sessions) as s:
        postgres = s.connection().dialect.name == "postgresql"
        if postgres:
            s.connection().exec_driver_sql("ANALYZE jobs")  # no job exported yet
        job_artifacts.resolve_artifacts(s, dev, ["onnx"], len(ARCHS), store)
    with transaction(sessions) as s:
        conn = s.connection()
        pick = queue._PICK.params(device=dev, formats=["onnx"], max_jobs=4)
        sql = str(pick.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a table of a few rows: a scan would do
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        plan = "\n".join(str(row) for row in conn.exec_driver_sql(explain + sql).all())
        s.rollback()
    # SQLite takes ix_jobs_queue (device and state, then lease order) as readily: no sort either way
    assert ("ix_jobs_ready" in plan if postgres else "USING INDEX" in plan) and "Sort" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert len(lease(sessions, agent_id, store, max_jobs=4)) == 4


def test_agent_calls_naming_another_agents_job_never_wait_for_its_row_lock(pg_sessions, store):
    """Agent A names job J that agent B holds while B's report of J holds J's row lock: A's heartbeat, report,
    release and requeue of a repaired fetch answer at once (no lock wait: ``lock_timeout``) and treat J as not A's;
    A's own lease is still renewed and B's report then stores J."""
    sessions = pg_sessions
    dev = make_device(sessions)
    a, b = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS[:2])
    t0 = utcnow()
    ((mine, *_),) = lease(sessions, a, store, max_jobs=1, lease_seconds=100, now=t0)
    ((theirs, *_),) = lease(sessions, b, store, max_jobs=1)
    later = t0 + timedelta(seconds=60)
    calls = {
        "heartbeat": (lambda s, ref: queue.heartbeat(s, ref, [theirs, mine], 100, now=later), [theirs]),
        "report": (
            lambda s, ref: [(ack.accepted, ack.message) for ack in reports.report(s, ref, [ok_result(theirs)], {}, 3)],
            [(False, "job is not leased by this agent (lease expired or re-leased)")],
        ),
        "release": (lambda s, ref: queue.release(s, ref, [theirs]), 0),
        "requeue_repaired": (lambda s, ref: queue.requeue_repaired(s, ref, [theirs]), []),
    }
    with transaction(sessions) as held:  # B's report, not yet committed: J's row stays locked
        assert reports.report(held, held.get(Agent, b), [ok_result(theirs)], {}, 3)[0].accepted
        for name, (call, expected) in calls.items():
            with transaction(sessions) as s:
                s.connection().exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # a wait fails the call
                assert call(s, liveness.AgentRef(a, dev)) == expected, name
    assert job(sessions, theirs).state == JobState.done
    with sessions() as s:
        assert s.scalar(select(Measurement.agent_id).where(Measurement.job_id == theirs)) == b
    renewed = job(sessions, mine)
    assert (renewed.state, as_utc(renewed.lease_expires_at)) == (JobState.running, later + timedelta(seconds=100))


def test_agent_calls_find_the_named_jobs_by_primary_key_with_statistics_from_before_the_leases(pg_sessions, store):
    """The statements that lock the jobs an agent names read them by primary key, their holder a filter: a condition
    on the state could take a state index (statistics from while the jobs were queued say none runs) and read every
    running job of the fleet."""
    sessions = pg_sessions
    dev = make_device(sessions)
    agent = make_agent(sessions, dev)
    submit(sessions, dev, ARCHS)
    with transaction(sessions) as s:
        s.connection().exec_driver_sql("ANALYZE jobs")  # every job queued
    named = [j for j, *_ in lease(sessions, agent, store, max_jobs=len(ARCHS))]
    with transaction(sessions) as s:
        conn = s.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a table of a few rows: a scan would do
        for statement in (queue._NAMED, reports._LOCK_REPORTED):
            bound = statement.params(ids=named[:4], agent_id=agent)
            sql = str(bound.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql).scalars())
            assert "jobs_pkey" in plan and "ix_jobs" not in plan, plan
        s.rollback()


def test_an_agent_start_reads_the_jobs_on_its_lease_by_the_holder_index(pg_sessions, store):
    """``release_all`` (once per agent start) finds the jobs on the agent's lease by ``ix_jobs_holder``, also in a
    generic plan with statistics from before the leases: a condition on the state would take a state index
    (statistics say none runs) and read every running job of the fleet. It hands back the agent's running jobs
    only."""
    sessions = pg_sessions
    dev = make_device(sessions)
    agent, other = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS)
    with transaction(sessions) as s:
        s.connection().exec_driver_sql("ANALYZE jobs")  # every job queued
    done, *mine = [j for j, *_ in lease(sessions, agent, store, max_jobs=4)]
    with transaction(sessions) as s:
        assert reports.report(s, s.get_one(Agent, agent), [ok_result(done)], {}, 3)[0].accepted
    lease(sessions, other, store, max_jobs=4)
    with transaction(sessions) as s:
        conn = s.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a table of a few rows: a scan would do
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")  # as a prepared statement's
        sql = str(queue._HELD.compile(dialect=conn.dialect)).replace("%(agent_id)s", "$1")
        conn.exec_driver_sql(f"PREPARE held(varchar) AS {sql}")
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN EXECUTE held('{agent}')").scalars())
        s.rollback()
    assert "ix_jobs_holder" in plan, plan
    with transaction(sessions) as s:
        assert queue.release_all(s, s.get_one(Agent, agent)) == len(mine)
    assert [job(sessions, j).state for j in [done, *mine]] == [JobState.done] + [JobState.queued] * len(mine)


def test_deleting_an_agent_clears_its_jobs_and_measurements_by_index(pg_sessions, store):
    """Deleting an agent sets the holder of every job it held and the agent of its measurements to NULL (ON DELETE
    SET NULL), which PostgreSQL reads by ``ix_jobs_holder`` and ``ix_measurements_agent``: no scan of either table,
    which read every job and measurement of the fleet. Another agent's rows keep theirs."""
    sessions = pg_sessions
    dev = make_device(sessions)
    agent, other = make_agent(sessions, dev), make_agent(sessions, dev)
    submit(sessions, dev, ARCHS)
    done, running = [j for j, *_ in lease(sessions, agent, store, max_jobs=2)]
    theirs = [j for j, *_ in lease(sessions, other, store, max_jobs=2)]
    report(sessions, agent, [ok_result(done)])
    report(sessions, other, [ok_result(theirs[0])])
    scans = (  # this backend's counts not yet reported (this transaction's and maybe earlier ones')
        "SELECT relname, seq_scan FROM pg_stat_xact_user_tables"
        " WHERE schemaname = current_schema() AND relname IN ('jobs', 'measurements') ORDER BY relname"
    )
    with transaction(sessions) as s:
        conn = s.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a table of a few rows: a scan would do
        before = conn.exec_driver_sql(scans).all()
        s.delete(s.get_one(Agent, agent))
        s.flush()
        after = conn.exec_driver_sql(scans).all()
    assert [table for table, _ in before] == ["jobs", "measurements"] and after == before, (before, after)
    assert [job(sessions, j).lease_owner for j in (done, running, *theirs)] == [None, None, other, other]
    with sessions() as s:
        by_job = dict(s.execute(select(Measurement.job_id, Measurement.agent_id)).all())
    assert by_job == {done: None, theirs[0]: other}
