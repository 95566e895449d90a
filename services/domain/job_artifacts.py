"""The models queued jobs wait for: which to export, the exported artifact recorded on every job that
waits for it, and those jobs failed when its export fails (``artifacts`` is the store the artifacts live in).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from latfarm.services.core.clock import utcnow
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.queue import failed_values, finish_failed
from latfarm.services.store.models import Arch, Artifact, Job, JobBatch, JobState


class ArtifactSource(Protocol):
    """What leasing needs of the artifact store: the artifact of an arch in a format under some conditions, exported
    if needed."""

    def ensure(self, session: Session, arch: Arch, fmt: str, conditions: Conditions) -> Artifact:
        """The recorded artifact of ``arch`` in ``fmt`` under ``conditions``, exported and recorded first if
        missing."""


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
            finish_failed(job, export_failure(err), now)
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
    _update_waiting(session, failed, failed_values(export_failure(err), now or utcnow()))
    return len(failed)
