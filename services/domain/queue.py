"""The job queue: rows in the database, leased by agents, so nothing is lost when a server restarts.

A lease lasts ``lease_seconds`` past the agent's last heartbeat. Each lease counts as one attempt (``Job.attempts``);
a lease that lapses or a failure report spends it, a release hands it back. After ``max_attempts`` spent attempts
the job fails with the reason. PostgreSQL leases with ``FOR UPDATE SKIP LOCKED``, so replicas never lease a job
twice; on SQLite every transaction takes the one writer lock (``BEGIN IMMEDIATE``, see ``store.db``), and lease
writes are guarded by the job's state as well. An agent's report of results: ``reports``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.orm import Session

from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.liveness import mark_alive, registered
from latfarm.services.domain.network_export import FORMATS
from latfarm.services.store.models import LEASED, READY, Arch, Artifact, Job, JobBatch, JobState

BATCHES_CACHED = 4096  # batches whose settings a process keeps (a batch's conditions and protocol never change)
RENEW_SLACK = 0.1  # a heartbeat leaves a lease alone that already runs this part of lease_seconds as long
_EXPIRED = re.compile(r"^lease expired (\d+) times?")


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


@dataclass
class Ack:
    """The answer to one reported result: accepted or not, whether it repeated a stored one, and why."""

    job_id: str
    accepted: bool
    duplicate: bool = False
    message: str = ""


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
    or ``job_artifacts.resolve_artifacts``. Both statements run on the session's connection (no ORM flush or identity
    map).
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
# The holder of a named job, as a filter on rows found by primary key: compared by IS NOT DISTINCT FROM (the same
# answer, an agent id is never NULL), which no index serves. With ``lease_owner = ...`` PostgreSQL may take
# ``ix_jobs_holder`` (its statistics taken while the jobs were queued say the agent holds none) and read every job the
# agent ever held.
HELD_BY_CALLER = Job.lease_owner.is_not_distinct_from(bindparam("agent_id", type_=Job.lease_owner.type))
# the statements ``heartbeat`` runs, built once: lock the named jobs the agent holds (``_lock_held`` too), renew
# their leases. The jobs are found by primary key, their holder a filter on those rows and their state checked after:
# with a condition on ``state`` PostgreSQL may take a state index (its statistics taken while the jobs were queued
# say few run) and read every running job of the fleet. PostgreSQL locks only the rows the filter passes, so a job
# another agent holds is neither locked nor waited for (an agent naming a stale id never stalls its holder).
_NAMED = (
    select(Job.id, Job.lease_expires_at, Job.state)
    .where(Job.id.in_(bindparam("ids", expanding=True)), HELD_BY_CALLER)
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

    The named jobs whose lease is the agent's are locked in id order (as ``reports.report`` locks them: no
    deadlock); others' are left alone. A lease is written only when its extension moves it by more than
    ``RENEW_SLACK`` of ``lease_seconds``. Runs on the session's connection.
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


def release(session: Session, agent: Holder, job_ids: Sequence[str]) -> int:
    """Hand the agent's running jobs among ``job_ids`` back to the queue; the attempt is not counted. Returns how
    many."""
    return len(_hand_back(session, agent, job_ids))


def _hand_back(session: Session, agent: Holder, job_ids: Sequence[str], **values: Any) -> list[str]:
    """Hand the agent's running jobs among ``job_ids`` (``_lock_held``) back to the queue, the attempt not spent,
    with ``values`` (``error``) set; returns them."""
    held = _lock_held(session, agent, job_ids)
    if held:
        session.execute(
            update(Job)
            .where(Job.id.in_(held))
            .values(state=JobState.queued, lease_owner=None, lease_expires_at=None, attempts=Job.attempts - 1, **values)
            .execution_options(synchronize_session=False)
        )
    return held


def _lock_held(session: Session, agent: Holder, job_ids: Sequence[str]) -> list[str]:
    """The jobs among ``job_ids`` the agent holds (running on its lease), locked in id order as ``heartbeat`` and
    ``reports.report`` lock them (no deadlock); others' jobs are neither locked nor waited for."""
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
            finish_failed(job, f"{reason}{earlier}", now)
        else:
            _back_to_queue(job, reason)
    session.flush()
    return len(expired)


def requeue_repaired(session: Session, agent: Holder, job_ids: Sequence[str]) -> list[Ack]:
    """Jobs this agent could not fetch because the server's artifact was corrupt (rebuilt since): back to the
    queue with the attempt not spent, as the device is not at fault. Repeats are bounded: a job whose artifact is
    sound when its fetch failure comes in spends the attempt (``reports.report``). Acks the jobs the agent held;
    ``liveness.UnknownAgent`` when the agent was removed."""
    if not job_ids:
        return []
    registered(session, agent.id)
    held = _hand_back(session, agent, job_ids, error="fetch: the server's artifact was corrupt and was rebuilt")
    return [Ack(job_id, True, message="artifact rebuilt on the server: job queued again") for job_id in held]


# the jobs on an agent's lease, by ``ix_jobs_holder``: no condition on the state, which statistics taken while the jobs
# were queued would have PostgreSQL serve from a state index, reading every running job of the fleet (``release``
# checks the state)
_HELD = select(Job.id).where(Job.lease_owner == bindparam("agent_id", type_=Job.lease_owner.type), LEASED)


def release_all(session: Session, agent: Holder) -> int:
    """Hand every job the agent holds back to the queue, attempts not spent: an agent process that starts holds
    none, so leases of its earlier process (same credential) end at once instead of lapsing."""
    held = session.scalars(_HELD, {"agent_id": agent.id}).all()
    return release(session, agent, held)


def requeued_values(reason: str) -> dict[str, Any]:
    """The values of a job handed back to the queue because of ``reason`` (its attempt spent)."""
    return {"state": JobState.queued, "lease_owner": None, "lease_expires_at": None, "error": reason}


def failed_values(reason: str, now: datetime) -> dict[str, Any]:
    """The values of a job that failed for good at ``now`` because of ``reason``."""
    return {"state": JobState.failed, "lease_expires_at": None, "error": reason[:2000], "finished_at": now}


def _back_to_queue(job: Job, reason: str) -> None:
    for name, value in requeued_values(reason).items():
        setattr(job, name, value)


def finish_failed(job: Job, reason: str, now: datetime) -> None:
    """Fail ``job`` for good at ``now`` because of ``reason`` (``failed_values``), on the ORM object."""
    for name, value in failed_values(reason, now).items():
        setattr(job, name, value)
