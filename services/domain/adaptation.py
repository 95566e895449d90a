"""The adapt loop: choose K archs for a device, have its agents measure them, fit the predictor, activate it.

An ``Adaptation`` row carries the state (measuring → training → active | failed), so any server replica can
advance it: ``advance_all`` runs in every server's adapt worker (``workers.adapt_worker``) and claims rows one
at a time.

An adaptation is fitted under the conditions its device had when it started (``Adaptation.conditions_key``): its
jobs are measured under them, only rows measured under them are fitted, and predictions use it only while the
device still has them (``crud.active_adaptation``); a device whose batch size or precision changed needs a new one.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from latfarm.predictor import nb201
from latfarm.services.core.errors import Conflict, InvalidArgument
from latfarm.services.domain import queue
from latfarm.services.domain.outliers import robust_adapt
from latfarm.services.domain.predictions import agent_latency, conditions_of, device_statistic
from latfarm.services.store.db import transaction
from latfarm.services.store.models import (
    Adaptation,
    AdaptState,
    Arch,
    Device,
    Job,
    JobState,
    Measurement,
    Source,
    usable,
    utcnow,
)

log = logging.getLogger(__name__)
MAX_SAMPLES = 200


class AdaptError(InvalidArgument):
    """A request the adapt loop cannot take; the message is safe to show a client."""


class AdaptationRunning(Conflict):
    """The device already has an adaptation measuring or training."""


def latest(session: Session, device: Device) -> Adaptation | None:
    """The device's most recent adaptation that is not superseded."""
    return session.scalars(
        select(Adaptation)
        .where(Adaptation.device_id == device.id, Adaptation.state != AdaptState.superseded)
        .order_by(Adaptation.created_at.desc())
        .limit(1)
    ).first()


def start(
    session: Session,
    device: Device,
    predictor,
    *,
    samples: int,
    seed: int = 0,
    fmt: str = "onnx",
    requested_by: str | None = None,
) -> Adaptation:
    """Choose ``samples`` archs with the predictor's default strategy and queue their measurement under the
    device's conditions (recorded on the batch and the adaptation)."""
    if not 3 <= samples <= MAX_SAMPLES:
        raise AdaptError(f"samples must be between 3 and {MAX_SAMPLES}, got {samples}")
    running = latest(session, device)
    if running is not None and running.state in (AdaptState.measuring, AdaptState.training):
        raise AdaptationRunning(
            f"device {device.name!r} already has adaptation {running.id} in state {running.state.value}"
        )
    indices = [int(i) for i in predictor.select_samples(samples, seed=seed)]
    archs = [nb201.to_string(nb201.from_official_index(i)) for i in indices]
    conditions = conditions_of(device)
    batch = queue.submit_batch(
        session, device, archs, space=nb201.SPACE, fmt=fmt, requested_by=requested_by, conditions=conditions
    )
    adaptation = Adaptation(
        device_id=device.id,
        samples=samples,
        strategy="default",
        sample_archs=indices,
        batch_id=batch.id,
        checkpoint=predictor.version,
        conditions_key=conditions.key,
    )
    session.add(adaptation)
    session.flush()
    return adaptation


def describe(session: Session, adaptation: Adaptation | None) -> dict:
    """The ``predictor`` block of a device: state, progress, metrics, the conditions it was fitted under and
    whether they are still the device's (``current``: false means predictions no longer use it; adapt again)."""
    if adaptation is None:
        return {"state": "none"}
    device = session.get_one(Device, adaptation.device_id)
    out = {
        "id": adaptation.id,
        "state": adaptation.state.value,
        "conditions_key": adaptation.conditions_key,
        "current": adaptation.conditions_key == conditions_of(device).key,
        "samples": adaptation.samples,
        "checkpoint": adaptation.checkpoint,
        "created_at": adaptation.created_at.isoformat(),
        "activated_at": adaptation.activated_at.isoformat() if adaptation.activated_at else None,
        "metrics": adaptation.metrics,
        "error": adaptation.error,
    }
    if adaptation.batch_id:
        out["progress"] = queue.batch_progress(session, adaptation.batch_id)
    return out


def _sample_latencies(session: Session, adaptation: Adaptation) -> tuple[list[int], list[float]]:
    """Median of the agent-measured latencies of each sampled arch on the device under the adaptation's conditions
    (in the device's statistic), by NB201 index."""
    statistic = device_statistic(session, adaptation.device_id, adaptation.conditions_key)
    rows = session.execute(
        select(Arch.nb201_index, agent_latency(statistic))
        .join(Arch, Arch.id == Measurement.arch_id)
        .where(
            Measurement.device_id == adaptation.device_id,
            Arch.nb201_index.in_(adaptation.sample_archs),
            Measurement.conditions_key == adaptation.conditions_key,
            Measurement.source == Source.measured,
            usable(),
        )
    ).all()
    by_index: dict[int, list[float]] = {}
    for index, latency_ms in rows:
        by_index.setdefault(int(index), []).append(float(latency_ms))
    indices = sorted(by_index)
    return indices, [float(np.median(by_index[i])) for i in indices]


def _claim(session: Session, adaptation_id: str, from_state: AdaptState, to_state: AdaptState) -> bool:
    """Move one adaptation between states unless another replica did first."""
    result = session.execute(
        update(Adaptation).where(Adaptation.id == adaptation_id, Adaptation.state == from_state).values(state=to_state)
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # an UPDATE's result is a cursor result


def advance(sessions: sessionmaker[Session], adaptation_id: str, predictor) -> AdaptState:
    """One step of one adaptation: when its measurements are in, fit and activate it."""
    with transaction(sessions) as session:
        adaptation = session.get(Adaptation, adaptation_id)
        if adaptation is None or adaptation.state != AdaptState.measuring:
            return adaptation.state if adaptation else AdaptState.failed
        pending = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.batch_id == adaptation.batch_id, Job.state.in_([JobState.queued, JobState.running]))
        )
        if pending:
            return AdaptState.measuring
        if not _claim(session, adaptation_id, AdaptState.measuring, AdaptState.training):
            return AdaptState.training
    try:
        return _fit(sessions, adaptation_id, predictor)
    except Exception as err:  # noqa: BLE001 - whatever fails after the claim fails this adaptation, never strands it
        log.exception("adaptation %s failed", adaptation_id)
        with transaction(sessions) as session:
            failed = session.get_one(Adaptation, adaptation_id)
            failed.state, failed.error = AdaptState.failed, f"fit failed: {err}"
        return AdaptState.failed


def _fit(sessions: sessionmaker[Session], adaptation_id: str, predictor) -> AdaptState:
    """Fit and activate a claimed (``training``) adaptation; raises on any failure (``advance`` records it)."""
    with transaction(sessions) as session:
        adaptation = session.get_one(Adaptation, adaptation_id)  # this call just claimed it
        indices, values = _sample_latencies(session, adaptation)
        if len(indices) < 3:
            adaptation.state = AdaptState.failed
            adaptation.error = f"only {len(indices)} of {adaptation.samples} sample archs were measured; need 3"
            return adaptation.state
        model, outliers = robust_adapt(predictor, indices, values)
        kept = [(i, v) for i, v in zip(indices, values, strict=True) if i not in outliers]
        fitted, _ = model.predict(np.asarray([i for i, _ in kept]))
        truth = np.asarray([v for _, v in kept])
        adaptation.params = model.to_state()
        adaptation.metrics = {
            "measured": len(indices),
            "outliers": outliers,  # sampled archs left out of the fit (``domain.outliers``)
            "fit_mean_abs_rel_error": float(np.mean(np.abs(fitted - truth) / truth)),
        }
        session.execute(
            update(Adaptation)
            .where(Adaptation.device_id == adaptation.device_id, Adaptation.state == AdaptState.active)
            .values(state=AdaptState.superseded)
        )
        adaptation.state = AdaptState.active
        adaptation.activated_at = utcnow()
        return adaptation.state


def advance_all(sessions: sessionmaker[Session], predictor) -> int:
    """Advance every adaptation waiting on measurements; returns how many became active."""
    with sessions() as session:
        ids = session.scalars(select(Adaptation.id).where(Adaptation.state == AdaptState.measuring)).all()
    return sum(advance(sessions, i, predictor) == AdaptState.active for i in ids)
