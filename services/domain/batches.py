"""Batches as clients see them: a submitted batch (one queued job per arch for a device), its progress,
its cancellation; the queue's depth and the queued jobs no online agent can take."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, insert, select, update
from sqlalchemy.orm import Session

from latfarm.agents.runtimes import job_format
from latfarm.predictor import nb201
from latfarm.predictor.spaces import ArchError, UnknownSpace
from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.core.errors import FailedPrecondition, InvalidArgument
from latfarm.services.core.names import new_id
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import FORMATS
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.models import Agent, Arch, Device, Job, JobBatch, JobState

MAX_BATCH = nb201.NUM_ARCHS
MAX_ERRORS_SHOWN = 20


class QueueError(InvalidArgument):
    """A request the queue refuses; the message is safe to show a client."""


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


def queue_depth(session: Session) -> dict[str, int]:
    """Number of jobs in each state (all states present)."""
    counts = {state: n for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state))}
    return {state.value: counts.get(state, 0) for state in JobState}


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
