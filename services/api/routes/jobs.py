"""Measurement requests: a batch of archs for one device, and its progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.core.errors import InvalidArgument, NotFound, PermissionDenied
from latfarm.services.domain import batches
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.domain.results import statistic_of
from latfarm.services.store.models import Adaptation, Arch, Device, Job, JobBatch, Measurement

from ..auth import Principal, require
from ..deps import db, get_device, request_archs
from ..errors import named_once
from ..schemas import JobCancelled, JobCreate, JobCreated, JobItem, JobProgress

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=201, response_model=JobCreated)
def create_jobs(
    body: JobCreate, request: Request, session: Session = Depends(db), principal: Principal = Depends(require("jobs"))
) -> JobCreated:
    """Queue one job per distinct arch of the request's space on the device, under its conditions for that space
    (``Conditions.for_space``) with the request's overrides, in the request's model format or else the one the
    device's runtime runs, and wake its agents; 422 naming the field for a bad arch, space or condition, 409 naming
    ``format`` for a format the device's runtime does not run."""
    device = get_device(session, body.device)
    principal.check_device("jobs", device)
    archs = request_archs(body.archs, body.space)
    conditions = _conditions(device, body)
    batch = batches.submit_batch(
        session,
        device,
        archs,
        space=body.space,
        fmt=body.format,
        requested_by=principal.name,
        requested_by_key_id=principal.key_id,
        protocol=body.protocol.model_dump(exclude_none=True) if body.protocol else None,
        conditions=conditions,
        drawn_at_random=body.drawn_at_random,
    )
    session.commit()
    request.app.state.notifier.notify(device.id)
    return JobCreated(id=batch.id, device=device.name, jobs=len(set(archs)), format=batch.format)


def _conditions(device: Device, body: JobCreate) -> Conditions:
    """The job's conditions: the device's for the request's space with the request's overrides; a bad override is
    ``InvalidArgument`` naming it by its path in the request, ``conditions.<name>``."""
    try:
        return conditions_of(device).for_space(body.space).merged(body.overrides())
    except InvalidArgument as err:
        if err.field is None or err.field == "space":
            raise
        path = f"conditions.{err.field}"
        raise InvalidArgument(f"{path}: {named_once(err.message, err.field)}", field=path) from err


@router.get("/{batch_id}", response_model=JobProgress, response_model_exclude_none=True)
def job_progress(
    batch_id: str,
    items: bool = Query(False, description="Also list each job with its result."),
    session: Session = Depends(db),
    _: Principal = Depends(require("read")),
) -> JobProgress:
    """A batch's job counts per state (404 when unknown); with ``items``, each job and its result, in the order of
    the request's archs (a repeated arch at its first place)."""
    progress = batches.batch_progress(session, batch_id)
    if progress is None:
        raise NotFound(f"unknown job batch {batch_id!r}")
    result = JobProgress(**{**progress, "id": batch_id})
    if items:
        rows = session.execute(
            select(
                Arch.arch,
                Arch.space,
                Arch.reference_index,
                Job.state,
                Job.attempts,
                Measurement.latency_ms,
                Measurement.protocol,
                Measurement.unstable,
                Job.error,
                Job.drawn_at_random,
            )
            .join(Arch, Arch.id == Job.arch_id)
            .outerjoin(Measurement, Measurement.job_id == Job.id)
            .where(Job.batch_id == batch_id)
            .order_by(Job.position, Job.created_at, Job.id)  # batches not queued here (adaptation) have no position
        )
        result.items = [
            JobItem(
                arch=arch,
                index=index,
                nb201_index=index if space == nb201.SPACE else None,
                state=state.value,
                attempts=attempts,
                latency_ms=latency,
                statistic=statistic_of(protocol),
                unstable=unstable,
                error=error,
                drawn_at_random=drawn,
            )
            for arch, space, index, state, attempts, latency, protocol, unstable, error, drawn in rows
        ]
    return result


@router.post("/{batch_id}/cancel", response_model=JobCancelled)
def cancel_jobs(
    batch_id: str, session: Session = Depends(db), principal: Principal = Depends(require("read"))
) -> JobCancelled:
    """Cancel a batch's queued and running jobs (404 when unknown; 403 unless the key submitted it, owns its device
    or is an admin; an adaptation's batch only its device's owner or an admin, as the adaptation itself). Cancelled
    jobs are never leased; an agent measuring one drops it at its next heartbeat and its report is refused. Done and
    failed jobs keep their results; cancelling twice cancels nothing more."""
    batch = session.get(JobBatch, batch_id)
    if batch is None:
        raise NotFound(f"unknown job batch {batch_id!r}")
    adapting = session.scalar(select(Adaptation.id).where(Adaptation.batch_id == batch_id)) is not None
    submitter = principal.can("jobs") and batch.requested_by_key_id == principal.key_id and not adapting
    if not submitter and not principal.can_on("devices", session.get_one(Device, batch.device_id)):
        raise PermissionDenied(
            "only the key that submitted this batch, or its device's owner or an admin, may cancel it"
        )
    cancelled = batches.cancel_batch(session, batch_id)
    session.commit()
    progress = batches.batch_progress(session, batch_id)
    assert progress is not None, "the batch was read above"
    return JobCancelled(id=batch_id, cancelled_now=cancelled, progress=JobProgress(**{**progress, "id": batch_id}))
