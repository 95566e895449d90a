"""The job queue: rows in the database, leased by agents, so nothing is lost when a server restarts.

A lease lasts ``lease_seconds`` past the agent's last heartbeat. Each lease counts as one attempt (``Job.attempts``);
a lease that lapses or a failure report spends it, a release hands it back. After ``max_attempts`` spent attempts
the job fails with the reason. PostgreSQL leases with ``FOR UPDATE SKIP LOCKED``, so replicas never lease a job
twice; on SQLite every transaction takes the one writer lock (``BEGIN IMMEDIATE``, see ``store.db``), and lease
writes are guarded by the job's state as well.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import JSON, CursorResult, Integer, bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.types import TypeDecorator

from latfarm.agents.runtimes import job_format
from latfarm.predictor import nb201
from latfarm.predictor.spaces import ArchError, UnknownSpace
from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.core.errors import FailedPrecondition, InvalidArgument
from latfarm.services.core.names import new_id
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.liveness import UnknownAgent, mark_alive, registered
from latfarm.services.domain.network_export import FORMATS
from latfarm.services.domain.results import ReportedResult, measurement_row, validate
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.models import (
    LEASED,
    READY,
    Agent,
    Arch,
    Artifact,
    Device,
    Job,
    JobBatch,
    JobState,
    Measurement,
)

MAX_BATCH = nb201.NUM_ARCHS
BATCHES_CACHED = 4096  # batches whose settings a process keeps (a batch's conditions and protocol never change)
MAX_ERRORS_SHOWN = 20
RENEW_SLACK = 0.1  # a heartbeat leaves a lease alone that already runs this part of lease_seconds as long
_EXPIRED = re.compile(r"^lease expired (\d+) times?")


class QueueError(InvalidArgument):
    """A request the queue refuses; the message is safe to show a client."""


class Holder(Protocol):
    """An agent as the queue needs it (an ``Agent`` row, or ``liveness.AgentRef``)."""

    @property
    def id(self) -> str:
        """The agent's id."""
        ...

    @property
    def device_id(self) -> int:
        """Its device's id."""
        ...


class ArtifactSource(Protocol):
    """What leasing needs of the artifact store: the artifact of an arch in a format under some conditions, exported
    if needed."""

    def ensure(self, session: Session, arch: Arch, fmt: str, conditions: Conditions) -> Artifact:
        """The recorded artifact of ``arch`` in ``fmt`` under ``conditions``, exported and recorded first if
        missing."""


@dataclass
class Ack:
    """The answer to one reported result: accepted or not, whether it repeated a stored one, and why."""

    job_id: str
    accepted: bool
    duplicate: bool = False
    message: str = ""


def submit_batch(
    session: Session,
    device: Device,
    archs: Sequence[str | Sequence[int]],
    *,
    space: str = nb201.SPACE,
    fmt: str | None = None,
    requested_by: str | None = None,
    requested_by_key_id: int | None = None,
    protocol: dict | None = None,
    conditions: Conditions,
    drawn_at_random: bool | Collection[str] = False,
) -> JobBatch:
    """Queue one job per distinct arch for ``device``, measured under ``conditions`` (the device's defaults with the
    request's overrides: ``device_conditions(...).merged(...)``); nothing is written when any arch is invalid.

    Each job's ``position`` is its arch's place among the distinct ``archs``: the order a batch's items are listed in.

    ``protocol`` (``MeasureSettings`` fields) overrides the agents' measurement options for these jobs;
    ``requested_by`` / ``requested_by_key_id`` are the submitting API key's name and id (None: the server's own).
    ``drawn_at_random`` marks the jobs whose arch was drawn uniformly at random (``Job.drawn_at_random``): True for
    all, or those of these canonical arch strings.

    ``fmt`` is the models' format: None for the one the device's runtime runs (``runtimes.job_format``), which is
    the only one a device of an agent runtime takes (``FailedPrecondition`` naming ``format`` for another: the
    request is sound, the device's runtime is what refuses it).
    """
    if conditions.space != space:
        raise QueueError(f"conditions are for space {conditions.space!r}, the archs for {space!r}", field="space")
    if fmt is not None and fmt not in FORMATS:
        raise QueueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        fmt = job_format(device.runtime, fmt)
    except ValueError as err:
        raise FailedPrecondition(f"format: {err}", field="format") from err
    if isinstance(archs, str) or not archs:
        raise QueueError("archs must be a non-empty list of arch strings")
    if len(archs) > MAX_BATCH:
        raise QueueError(f"at most {MAX_BATCH} archs per batch, got {len(archs)}")
    try:
        arch_ids = ensure_archs(session, archs, space)
    except (ArchError, UnknownSpace) as err:
        raise QueueError(str(err), field="archs") from err
    batch = JobBatch(
        device_id=device.id,
        space=space,
        format=fmt,
        requested_by=requested_by,
        requested_by_key_id=requested_by_key_id,
        protocol=protocol or {},
        conditions=conditions.to_dict(),
    )
    session.add(batch)
    session.flush()
    now = utcnow()
    drawn = set(arch_ids if drawn_at_random is True else drawn_at_random or ())
    rows = [
        {
            "id": new_id(),
            "batch_id": batch.id,
            "device_id": device.id,
            "arch_id": arch_id,
            "format": fmt,
            "state": JobState.queued,
            "attempts": 0,
            "requested_by": requested_by,
            "created_at": now,
            "position": position,
            "drawn_at_random": arch in drawn,
        }
        for position, (arch, arch_id) in enumerate(arch_ids.items())
    ]
    session.execute(insert(Job), rows)  # bulk: a whole space (15,625 jobs) in one round trip per chunk
    return batch


def batch_progress(session: Session, batch_id: str) -> dict | None:
    """Counts by state, how many jobs were drawn at random (``Job.drawn_at_random``) and the first failures of one
    batch; None when there is no such batch."""
    batch = session.get(JobBatch, batch_id)
    if batch is None:
        return None
    query = (
        select(Job.state, Job.drawn_at_random, func.count())
        .where(Job.batch_id == batch_id)
        .group_by(Job.state, Job.drawn_at_random)
    )
    counts: dict[JobState, int] = {}
    drawn = 0
    for state, at_random, n in session.execute(query):
        counts[state] = counts.get(state, 0) + n
        drawn += n if at_random else 0
    errors = session.execute(
        select(Arch.arch, Job.error)
        .join(Arch, Arch.id == Job.arch_id)
        .where(Job.batch_id == batch_id, Job.state == JobState.failed)
        .order_by(Job.finished_at, Job.id)
        .limit(MAX_ERRORS_SHOWN)
    )
    device_name = session.scalar(select(Device.name).where(Device.id == batch.device_id))
    by_state = {state.value: counts.get(state, 0) for state in JobState}
    conditions = Conditions.from_dict(batch.conditions)
    return {
        "id": batch.id,
        "device": device_name,
        "space": batch.space,
        "format": batch.format,
        "protocol": batch.protocol or {},
        "conditions": {"key": conditions.key, **conditions.to_dict()},  # as predictions show them
        "total": sum(by_state.values()),
        **by_state,
        "drawn_at_random": drawn,
        "created_at": as_utc(batch.created_at),
        "errors": [{"arch": arch, "error": error} for arch, error in errors],
    }


@dataclass(frozen=True)
class BatchSettings:
    """What a batch's jobs are measured under, fixed when it is submitted."""

    conditions: Conditions
    protocol: dict  # ``MeasureSettings`` fields overriding the agents' options


@dataclass(frozen=True)
class Leased:
    """A leased job with what its agent needs: its batch's settings, the arch and the artifact."""

    batch: BatchSettings
    job_id: str
    batch_id: str
    space: str
    arch: str
    format: str
    artifact_sha256: str
    artifact_size: int
    attempts: int
    created_at: datetime


def lease(
    session: Session,
    agent: Holder,
    *,
    max_jobs: int,
    formats: Sequence[str],
    lease_seconds: float,
    max_attempts: int = 3,
    now: datetime | None = None,
    requeue: bool = True,
) -> list[Leased]:
    """Mark the agent alive (``liveness.mark_alive``: ``UnknownAgent`` when it was removed) and lease up to
    ``max_jobs`` queued jobs of its device whose artifact is recorded, oldest first; with ``requeue``, the device's
    lapsed leases return to the queue first (``requeue_expired``).

    One ``WITH picked AS MATERIALIZED (...) UPDATE ... RETURNING`` picks the jobs (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL: replicas never lease a job twice), leases them and reads their arch and artifact size; their
    batches' settings come from ``batch_settings``. Jobs whose model is not exported yet wait for the export worker
    or ``resolve_artifacts``. Both statements run on the session's connection (no ORM flush or identity map).
    """
    now = now or utcnow()
    agent = mark_alive(session, agent.id, now)
    if requeue:
        requeue_expired(session, max_attempts=max_attempts, now=now, device_id=agent.device_id)
    formats = [f for f in formats if f in FORMATS]
    if max_jobs <= 0 or not formats:
        return []
    rows = (
        session.connection()
        .execute(
            _LEASE,
            {
                "device": agent.device_id,
                "formats": formats,
                "max_jobs": max_jobs,
                "agent_id": agent.id,
                "expires": now + timedelta(seconds=lease_seconds),
            },
        )
        .all()
    )
    batches = batch_settings(session, {row.batch_id for row in rows})
    return sorted((Leased(batches[row.batch_id], *row) for row in rows), key=lambda job: (job.created_at, job.job_id))


# the jobs a lease takes: ``device``'s oldest ready ones in ``formats`` (a list), at most ``max_jobs``; read from
# ``ix_jobs_ready`` in this order
_PICK = (
    select(Job.id)
    .where(Job.device_id == bindparam("device"), READY, Job.format.in_(bindparam("formats", expanding=True)))
    .order_by(Job.created_at, Job.id)
    .limit(bindparam("max_jobs", type_=Integer))
    .with_for_update(skip_locked=True)
)


def _lease_statement() -> Any:
    """The statement ``lease`` runs, built once (its values bound per call): ``device``, ``formats`` (a list),
    ``max_jobs``, ``agent_id``, ``expires``."""
    # picked once: a re-evaluated pick (concurrent updates) could exceed max_jobs
    picked = _PICK.cte("picked").prefix_with("MATERIALIZED")
    return (
        update(Job)
        .where(Job.id == picked.c.id, Job.state == JobState.queued)
        .values(
            state=JobState.running,
            lease_owner=bindparam("agent_id", type_=Job.lease_owner.type),
            lease_expires_at=bindparam("expires", type_=Job.lease_expires_at.type),
            attempts=Job.attempts + 1,
        )
        .returning(
            Job.id,
            Job.batch_id,
            select(Arch.space).where(Arch.id == Job.arch_id).scalar_subquery(),
            select(Arch.arch).where(Arch.id == Job.arch_id).scalar_subquery(),
            Job.format,
            Job.artifact_sha256,
            select(Artifact.size_bytes).where(Artifact.sha256 == Job.artifact_sha256).scalar_subquery(),
            Job.attempts,
            Job.created_at,
        )
    )


_LEASE = _lease_statement()


def resolve_artifacts(
    session: Session,
    device_id: int,
    formats: Sequence[str],
    limit: int,
    artifacts: ArtifactSource,
    now: datetime | None = None,
) -> int:
    """Record the artifact of each of the next ``limit`` queued jobs of a device in ``formats`` that has none,
    exporting it in this transaction if needed; a job whose export fails fails at once with the reason
    (``export_failure``). Returns how many jobs it resolved or failed. (The server exports outside transactions
    first, ``export_worker.export_one``, and calls this for ``INLINE_FORMATS`` only; this is what is left, and what an
    embedded caller uses.)"""
    now = now or utcnow()
    jobs = session.scalars(
        select(Job)
        .where(
            Job.device_id == device_id,
            Job.state == JobState.queued,
            Job.format.in_(list(formats)),
            Job.artifact_sha256.is_(None),
        )
        .order_by(Job.created_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .options(selectinload(Job.arch), selectinload(Job.batch))
    ).all()
    for job in jobs:
        try:
            with session.begin_nested():  # a failed export leaves the transaction usable
                conditions = Conditions.from_dict(job.batch.conditions)
                job.artifact_sha256 = artifacts.ensure(session, job.arch, job.format, conditions).sha256
        except Exception as err:  # noqa: BLE001 - an export failure fails this job, not the caller
            _finish_failed(job, export_failure(err), now)
    session.flush()
    return len(jobs)


def export_failure(err: Exception) -> str:
    """The error of a job whose model's export raised ``err``."""
    return f"artifact export failed: {type(err).__name__}: {err}"


@dataclass(frozen=True)
class PendingExport:
    """One model to export: an arch in a format under some conditions."""

    arch_id: int
    arch: str
    fmt: str
    conditions: Conditions


def _pending(rows: Iterable[tuple[Arch, str, dict]]) -> list[PendingExport]:
    """Rows of (arch, format, batch conditions) as distinct models, in first-seen order."""
    models = (PendingExport(arch.id, arch.arch, fmt, Conditions.from_dict(c)) for arch, fmt, c in rows)
    return list(dict.fromkeys(models))


def pending_artifacts(session: Session, device_id: int, formats: Sequence[str], limit: int) -> list[PendingExport]:
    """The models of the next ``limit`` queued jobs of a device (the next lease) that are not exported yet.

    Exporting these first, outside the lease transaction, keeps that transaction (and SQLite's one writer) short.
    """
    upcoming = (
        select(Job.id)
        .where(Job.device_id == device_id, Job.state == JobState.queued, Job.format.in_(list(formats)))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    rows = session.execute(
        select(Arch, Job.format, JobBatch.conditions)
        .join(Arch, Arch.id == Job.arch_id)
        .join(JobBatch, JobBatch.id == Job.batch_id)
        .where(Job.id.in_(upcoming.scalar_subquery()), Job.artifact_sha256.is_(None))
        .order_by(Job.created_at, Job.id)
    )
    return _pending(rows)


def unexported_jobs(
    session: Session, limit: int, after: tuple[datetime, str] | None = None
) -> tuple[list[PendingExport], tuple[datetime, str] | None]:
    """The models of the next ``limit`` queued jobs of all devices that are not exported yet, oldest job first,
    after the job key ``after`` (``(created_at, id)``), and the key of the last job read (None when none: pages
    through the queue)."""
    query = (
        select(Arch, Job.format, JobBatch.conditions, Job.id, Job.created_at)
        .join(Arch, Arch.id == Job.arch_id)
        .join(JobBatch, JobBatch.id == Job.batch_id)
        .where(Job.state == JobState.queued, Job.artifact_sha256.is_(None))
    )
    if after is not None:
        query = query.where(tuple_(Job.created_at, Job.id) > tuple_(*after))
    rows = session.execute(query.order_by(Job.created_at, Job.id).limit(limit)).all()
    last = (rows[-1][4], rows[-1][3]) if rows else None
    return _pending(row[:3] for row in rows), last


def _waiting_for(session: Session, model: PendingExport) -> list[tuple[str, int]]:
    """The queued jobs without an artifact that wait for ``model`` (same arch, format and conditions; any device),
    locked, as (job id, device id); jobs another transaction holds locked are skipped."""
    waiting = session.execute(
        select(Job.id, Job.device_id, JobBatch.conditions)
        .join(JobBatch, JobBatch.id == Job.batch_id)
        .where(
            Job.arch_id == model.arch_id,
            Job.format == model.fmt,
            Job.state == JobState.queued,
            Job.artifact_sha256.is_(None),
        )
        .order_by(Job.id)
        .with_for_update(skip_locked=True, of=Job)
    )
    return [
        (job_id, device_id)
        for job_id, device_id, conditions in waiting
        if Conditions.from_dict(conditions) == model.conditions
    ]


def _update_waiting(session: Session, ids: list[str], values: dict[str, Any]) -> None:
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.state == JobState.queued, Job.artifact_sha256.is_(None))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def assign_artifact(session: Session, model: PendingExport, sha256: str) -> set[int]:
    """Record the exported artifact of ``model`` on every queued job still without one that waits for it (same
    arch, format and conditions; any device): the export worker's mark, so a job is exported once and leased
    without a look at its file. Jobs another transaction holds locked are skipped (``resolve_artifacts`` records
    theirs). Returns the devices whose jobs it marked (their agents may lease them now)."""
    marked = _waiting_for(session, model)
    _update_waiting(session, [job_id for job_id, _ in marked], {"artifact_sha256": sha256})
    return {device_id for _, device_id in marked}


def fail_export(session: Session, model: PendingExport, err: Exception, now: datetime | None = None) -> int:
    """Fail every queued job that waits for ``model`` (as ``assign_artifact`` finds them) with the reason its
    export raised ``err`` (``export_failure``); returns how many. Jobs another transaction holds locked are skipped
    (the next failed export fails them)."""
    failed = [job_id for job_id, _ in _waiting_for(session, model)]
    _update_waiting(session, failed, _failed(export_failure(err), now or utcnow()))
    return len(failed)


# The holder of a named job, as a filter on rows found by primary key: compared by IS NOT DISTINCT FROM (the same
# answer, an agent id is never NULL), which no index serves. With ``lease_owner = ...`` PostgreSQL may take
# ``ix_jobs_holder`` (its statistics taken while the jobs were queued say the agent holds none) and read every job the
# agent ever held.
_HELD_BY_CALLER = Job.lease_owner.is_not_distinct_from(bindparam("agent_id", type_=Job.lease_owner.type))
# the statements ``heartbeat`` runs, built once: lock the named jobs the agent holds (``_lock_held`` too), renew
# their leases. The jobs are found by primary key, their holder a filter on those rows and their state checked after:
# with a condition on ``state`` PostgreSQL may take a state index (its statistics taken while the jobs were queued
# say few run) and read every running job of the fleet. PostgreSQL locks only the rows the filter passes, so a job
# another agent holds is neither locked nor waited for (an agent naming a stale id never stalls its holder).
_NAMED = (
    select(Job.id, Job.lease_expires_at, Job.state)
    .where(Job.id.in_(bindparam("ids", expanding=True)), _HELD_BY_CALLER)
    .order_by(Job.id)
    .with_for_update()
)
_RENEW = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
    .values(lease_expires_at=bindparam("expires", type_=Job.lease_expires_at.type))
)


def heartbeat(
    session: Session,
    agent: Holder,
    job_ids: Sequence[str],
    lease_seconds: float,
    now: datetime | None = None,
    **reported: Any,
) -> list[str]:
    """Mark the agent alive (with what it ``reported`` of itself: ``state``, ``descriptor``; ``UnknownAgent`` when
    it was removed) and extend the leases it still holds; returns the named jobs it no longer holds.

    The named jobs whose lease is the agent's are locked in id order (as ``report`` locks them: no deadlock); others'
    are left alone. A lease is written only when its extension moves it by more than ``RENEW_SLACK`` of
    ``lease_seconds``. Runs on the session's connection.
    """
    now = now or utcnow()
    mark_alive(session, agent.id, now, **reported)
    if not job_ids:
        return []
    connection = session.connection()
    expires = now + timedelta(seconds=lease_seconds)
    named = connection.execute(_NAMED, {"ids": list(job_ids), "agent_id": agent.id}).all()
    held = {job.id: job.lease_expires_at for job in named if job.state == JobState.running}
    slack = timedelta(seconds=lease_seconds * RENEW_SLACK)
    stale = [job_id for job_id, until in held.items() if (when := as_utc(until)) is None or when < expires - slack]
    if stale:
        connection.execute(_RENEW, {"ids": stale, "expires": expires})
    return [job_id for job_id in dict.fromkeys(job_ids) if job_id not in held]


# what ``report`` reads of each job it is told of
REPORTED_JOB = (
    Job.id,
    Job.batch_id,
    Job.device_id,
    Job.arch_id,
    Job.artifact_sha256,
    Job.state,
    Job.lease_owner,
    Job.attempts,
)
# the statements ``report`` runs, built once: they lock the jobs the agent holds (in id order, as heartbeats lock them:
# no deadlock; others' jobs neither locked nor waited for, as in ``_NAMED``) and read the reporting agent's device
# (NULL: the agent was removed), read the other named jobs unlocked (for their acks), read who stored the done ones,
# mark the measured ones done and store their measurements
_LOCK_REPORTED = (
    select(
        *REPORTED_JOB,
        select(Agent.device_id).where(Agent.id == bindparam("agent_id")).scalar_subquery().label("agent_device"),
    )
    .where(Job.id.in_(bindparam("ids", expanding=True)), _HELD_BY_CALLER)
    .order_by(Job.id)
    .with_for_update(of=Job)
)
_READ_REPORTED = select(*REPORTED_JOB).where(Job.id.in_(bindparam("ids", expanding=True)))
_STORED_BY = select(Measurement.job_id, Measurement.agent_id).where(
    Measurement.job_id.in_(bindparam("ids", expanding=True))
)
_MEASURED = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
    .values(
        state=JobState.done,
        error=None,
        lease_expires_at=None,
        finished_at=bindparam("now", type_=Job.finished_at.type),
    )
)


class _EncodedJSON(TypeDecorator):
    """A JSON column's value encoded by the caller (``json.dumps``, as the column's own type encodes it): bound as
    that text, which PostgreSQL casts to JSON as it casts the column's own values."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect):
        return None


MEASUREMENT_JSON = ("protocol", "round_medians_ms", "conditions", "provenance")  # the JSON columns of a row
_STORE_MEASUREMENTS = insert(Measurement).values(
    {name: bindparam(name, type_=_EncodedJSON()) for name in MEASUREMENT_JSON}
)
_batches: dict[str, BatchSettings] = {}  # batch id -> its settings, the most recent BATCHES_CACHED
_batches_lock = threading.Lock()


def batch_settings(session: Session, batch_ids: Collection[str]) -> dict[str, BatchSettings]:
    """The settings of batches ``batch_ids`` (that exist), conditions parsed; each batch is read and parsed once per
    process while it stays among the ``BATCHES_CACHED`` most recently read."""
    found = {batch_id: batch for batch_id in batch_ids if (batch := _batches.get(batch_id)) is not None}
    missing = [batch_id for batch_id in batch_ids if batch_id not in found]
    if missing:
        query = select(JobBatch.id, JobBatch.conditions, JobBatch.protocol).where(JobBatch.id.in_(missing))
        read = {
            batch_id: BatchSettings(Conditions.from_dict(conditions), protocol or {})
            for batch_id, conditions, protocol in session.connection().execute(query)
        }
        with _batches_lock:
            _batches.update(read)
            for oldest in list(_batches)[: max(0, len(_batches) - BATCHES_CACHED)]:
                del _batches[oldest]
        found.update(read)
    return found


def report(
    session: Session, agent: Holder, results: Sequence[ReportedResult], provenance: dict, max_attempts: int
) -> list[Ack]:
    """Store results of jobs this agent holds; a repeated ok report is acknowledged as a duplicate, stored once.

    The named jobs whose lease is the agent's are locked in one statement in id order (as heartbeats lock them: no
    deadlock) that also finds the agent's row: ``liveness.UnknownAgent`` when it was removed; the others are read
    without a lock, for their acks only (no agent waits for another's job). The measured ones are marked done in one
    ``UPDATE`` and their measurements inserted together, on the session's connection (no ORM objects). Raises
    ``results.ResultError`` for a malformed result before anything is written.
    """
    connection = session.connection()
    ids = sorted({result.job_id for result in results})
    locked = connection.execute(_LOCK_REPORTED, {"ids": ids, "agent_id": agent.id}).all() if ids else []
    if not locked:  # no job row to carry the agent's
        registered(session, agent.id)
    elif locked[0].agent_device is None:
        raise UnknownAgent(agent.id)
    for index, result in enumerate(results):
        validate(result, f"results[{index}]")
    if not results:
        return []
    now = utcnow()
    held = {job.id for job in locked if job.state == JobState.running}  # locked: the agent's lease, now and after
    jobs = {job.id: job for job in locked}
    others = [job_id for job_id in ids if job_id not in jobs]
    if others:
        jobs.update((job.id, job) for job in connection.execute(_READ_REPORTED, {"ids": others}))
    states = {job_id: job.state for job_id, job in jobs.items()}
    done = [job_id for job_id, state in states.items() if state == JobState.done]
    stored_by = dict(connection.execute(_STORED_BY, {"ids": done}).all()) if done else {}
    held_batches = {jobs[job_id].batch_id for job_id in held}
    conditions = {batch_id: batch.conditions for batch_id, batch in batch_settings(session, held_batches).items()}
    # the rows' JSON columns, encoded here (``_STORE_MEASUREMENTS``): what rows share, once per report
    shared_provenance = json.dumps(provenance)
    shared_conditions = {batch_id: json.dumps(parsed.to_dict()) for batch_id, parsed in conditions.items()}
    acks, rows, changes = [], [], []
    for result in results:
        job = jobs.get(result.job_id)
        state = states.get(result.job_id)
        if job is None:
            acks.append(Ack(result.job_id, False, message="unknown job"))
        elif state == JobState.done:
            if result.ok and stored_by.get(job.id) == agent.id:
                acks.append(Ack(job.id, True, duplicate=True, message="already stored"))
            else:
                acks.append(Ack(job.id, False, message="job already done"))
        elif state == JobState.cancelled:
            acks.append(Ack(job.id, False, message="job was cancelled"))
        elif job.id not in held or state != JobState.running:
            acks.append(Ack(job.id, False, message="job is not leased by this agent (lease expired or re-leased)"))
        elif result.ok:
            row = measurement_row(job, agent.id, result, provenance, conditions[job.batch_id])
            row.update(
                protocol=json.dumps(row["protocol"]),
                round_medians_ms=json.dumps(row["round_medians_ms"]),
                conditions=shared_conditions[job.batch_id],
                provenance=shared_provenance,
            )
            rows.append(row)
            stored_by[job.id] = agent.id
            states[job.id] = JobState.done  # a repeat within this report is a duplicate
            acks.append(Ack(job.id, True, message="unstable: stored flagged" if result.unstable else ""))
        else:
            reason = f"{result.error_class or 'error'}: {result.error_message or 'no message'}"[:2000]
            if job.attempts >= max_attempts:
                change = _failed(f"failed after {job.attempts} attempts; last: {reason}", now)
            else:
                change = _requeued(reason)
            states[job.id] = change["state"]
            changes.append((job.id, change))
            acks.append(Ack(job.id, True, message=f"job {change['state'].value}"))
    for job_id, change in changes:
        connection.execute(update(Job).where(Job.id == job_id).values(**change))
    if rows:
        connection.execute(_MEASURED, {"ids": [row["job_id"] for row in rows], "now": now})
        connection.execute(_STORE_MEASUREMENTS, rows)
    if changes or rows:
        session.expire_all()  # written past the session: objects it holds are reloaded when next read
    return acks


def release(session: Session, agent: Holder, job_ids: Sequence[str]) -> int:
    """Hand the agent's running jobs among ``job_ids`` back to the queue; the attempt is not counted. Returns how
    many."""
    held = _lock_held(session, agent, job_ids)
    if held:
        session.execute(
            update(Job)
            .where(Job.id.in_(held))
            .values(state=JobState.queued, lease_owner=None, lease_expires_at=None, attempts=Job.attempts - 1)
            .execution_options(synchronize_session=False)
        )
    return len(held)


def _lock_held(session: Session, agent: Holder, job_ids: Sequence[str]) -> list[str]:
    """The jobs among ``job_ids`` the agent holds (running on its lease), locked in id order as ``heartbeat`` and
    ``report`` lock them (no deadlock); others' jobs are neither locked nor waited for."""
    if not job_ids:
        return []
    named = session.connection().execute(_NAMED, {"ids": list(job_ids), "agent_id": agent.id})
    return [job.id for job in named if job.state == JobState.running]


def requeue_expired(
    session: Session, *, max_attempts: int, now: datetime | None = None, device_id: int | None = None
) -> int:
    """Return jobs whose lease lapsed to the queue (or fail them after ``max_attempts``); returns how many."""
    now = now or utcnow()
    query = select(Job).where(Job.state == JobState.running, Job.lease_expires_at < now)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    expired = session.scalars(query.with_for_update(skip_locked=True)).all()
    for job in expired:
        match = _EXPIRED.match(job.error or "")
        times = (int(match.group(1)) if match else 0) + 1
        reason = f"lease expired {times} time{'s' if times > 1 else ''}"
        if job.attempts >= max_attempts:
            earlier = f" (earlier: {job.error})" if job.error and not match else ""
            _finish_failed(job, f"{reason}{earlier}", now)
        else:
            _back_to_queue(job, reason)
    session.flush()
    return len(expired)


def queue_depth(session: Session) -> dict[str, int]:
    """Number of jobs in each state (all states present)."""
    counts = {state: n for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state))}
    return {state.value: counts.get(state, 0) for state in JobState}


def requeue_repaired(session: Session, agent: Holder, job_ids: Sequence[str]) -> list[Ack]:
    """Jobs this agent could not fetch because the server's artifact was corrupt (rebuilt since): back to the
    queue with the attempt not spent, as the device is not at fault. Repeats are bounded: a job whose artifact is
    sound when its fetch failure comes in spends the attempt (``report``). Acks the jobs the agent held;
    ``liveness.UnknownAgent`` when the agent was removed."""
    if not job_ids:
        return []
    registered(session, agent.id)
    held = _lock_held(session, agent, job_ids)
    if held:
        session.execute(
            update(Job)
            .where(Job.id.in_(held))
            .values(
                state=JobState.queued,
                lease_owner=None,
                lease_expires_at=None,
                attempts=Job.attempts - 1,
                error="fetch: the server's artifact was corrupt and was rebuilt",
            )
            .execution_options(synchronize_session=False)
        )
    return [Ack(job_id, True, message="artifact rebuilt on the server: job queued again") for job_id in held]


def cancel_batch(session: Session, batch_id: str, now: datetime | None = None) -> int:
    """Cancel a batch's queued and running jobs; returns how many. A cancelled job is never leased again; an agent
    measuring one learns it at its next heartbeat (the job is lost to it) and its report is refused."""
    live = Job.state.in_([JobState.queued, JobState.running])
    # lock in id order first, as reports and heartbeats lock them (no deadlock); the update then waits for nobody
    session.execute(select(Job.id).where(Job.batch_id == batch_id, live).order_by(Job.id).with_for_update())
    result = session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, live)
        .values(state=JobState.cancelled, lease_owner=None, lease_expires_at=None, finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount


def waiting_for_agent(session: Session, online_since: datetime) -> int:
    """Queued jobs of devices with no agent online (no heartbeat at or after ``online_since``)."""
    online = select(Agent.device_id).where(Agent.last_heartbeat >= online_since)
    query = select(func.count()).select_from(Job).where(Job.state == JobState.queued, Job.device_id.not_in(online))
    return session.scalar(query) or 0


# the jobs on an agent's lease, by ``ix_jobs_holder``: no condition on the state, which statistics taken while the jobs
# were queued would have PostgreSQL serve from a state index, reading every running job of the fleet (``release``
# checks the state)
_HELD = select(Job.id).where(Job.lease_owner == bindparam("agent_id", type_=Job.lease_owner.type), LEASED)


def release_all(session: Session, agent: Holder) -> int:
    """Hand every job the agent holds back to the queue, attempts not spent: an agent process that starts holds
    none, so leases of its earlier process (same credential) end at once instead of lapsing."""
    held = session.scalars(_HELD, {"agent_id": agent.id}).all()
    return release(session, agent, held)


def _requeued(reason: str) -> dict[str, Any]:
    """The values of a job handed back to the queue because of ``reason`` (its attempt spent)."""
    return {"state": JobState.queued, "lease_owner": None, "lease_expires_at": None, "error": reason}


def _failed(reason: str, now: datetime) -> dict[str, Any]:
    """The values of a job that failed for good at ``now`` because of ``reason``."""
    return {"state": JobState.failed, "lease_expires_at": None, "error": reason[:2000], "finished_at": now}


def _back_to_queue(job: Job, reason: str) -> None:
    for name, value in _requeued(reason).items():
        setattr(job, name, value)


def _finish_failed(job: Job, reason: str, now: datetime) -> None:
    for name, value in _failed(reason, now).items():
        setattr(job, name, value)
