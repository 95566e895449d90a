"""The adapt loop: choose K archs of a space for a device (and R random ones it has not measured), have its agents
measure them, fit that space's predictor, activate it. The device's other archs measured under the adaptation's
conditions that were drawn at random (the R among them, ``measure --random``'s) or imported are fitted too and
calibrate the predicted spread (``predictor.calibration``); archs someone chose (a search's picks, earlier samples)
do not. A device has at most one adaptation in progress and one active per space.

An ``Adaptation`` row carries the state (measuring → training → active | failed; measuring → cancelled when it or
its batch is cancelled, never fitted), so any server replica can advance it: ``advance_all`` runs in every server's
adapt worker (``workers.adapt_worker``) and claims rows one at a time.

An adaptation is fitted under the conditions its device had for its space when it started
(``Adaptation.conditions_key``, which names the space): its jobs are measured under them, only rows measured under
them are fitted, and predictions use it only while the device still has them (``crud.active_adaptation``); a device
whose batch size or precision changed needs a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from latfarm.predictor.calibration import MAX_CALIBRATION_ARCHS, MIN_CALIBRATION_ARCHS
from latfarm.services.core.clock import iso_utc
from latfarm.services.core.errors import Conflict, FailedPrecondition
from latfarm.services.domain import batches
from latfarm.services.domain.conditions import SPACES, space_of
from latfarm.services.domain.outliers import robust_adapt
from latfarm.services.domain.predictions import (
    agent_latency,
    conditions_of,
    device_statistic,
    fit_archs,
    keyed_by_position,
    measured_latencies,
    model_state,
)
from latfarm.services.domain.samples import check_calibration, check_samples
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
IN_PROGRESS = (AdaptState.measuring, AdaptState.training)


class AdaptationRunning(Conflict):
    """The device already has an adaptation measuring or training."""


class NothingToCancel(FailedPrecondition):
    """The device has no adaptation of the space that can still be cancelled."""


def of_space(space: str):
    """SQL condition: an adaptation of ``space`` (its conditions key names the space)."""
    return Adaptation.conditions_key.startswith(f"{space}/", autoescape=True)


def latest(session: Session, device: Device, space: str | None = None) -> Adaptation | None:
    """The device's most recent adaptation that is not superseded, of ``space`` (None: of any space)."""
    query = select(Adaptation).where(Adaptation.device_id == device.id, Adaptation.state != AdaptState.superseded)
    if space is not None:
        query = query.where(of_space(space))
    return session.scalars(query.order_by(Adaptation.created_at.desc()).limit(1)).first()


def start(
    session: Session,
    device: Device,
    predictor,
    *,
    samples: int,
    calibration: int = 0,
    seed: int = 0,
    fmt: str | None = None,
    requested_by: str | None = None,
) -> Adaptation:
    """Choose ``samples`` archs of the predictor's space with its default strategy, and ``calibration`` random other
    archs the device has no measurement of under its conditions, whose errors will set the spread factor
    (``predictor.calibration``), and queue their measurement under
    the device's conditions for that space (recorded on the batch and the adaptation), as ``fmt`` models (None: its
    runtime's; ``batches.submit_batch`` refuses another). ``sample_archs`` records the
    samples by reference position (NB201's official index) or canonical string (``predictions.keyed_by_position``)."""
    check_samples(samples)
    check_calibration(calibration)
    searched = predictor.space
    running = latest(session, device, searched.name)
    if running is not None and running.state in IN_PROGRESS:
        raise AdaptationRunning(
            f"device {device.name!r} already has {searched.name} adaptation {running.id} in state "
            f"{running.state.value}; wait for it, or cancel it: latfarm adapt {device.name} --cancel "
            f"(POST /v1/devices/{device.name}/adapt/cancel)"
        )
    chosen = predictor.select_samples(samples, seed=seed)
    reference = searched.reference_set()
    if keyed_by_position(searched.name):
        keys: list = [int(i) for i in chosen]
        archs = [searched.to_string(reference[i]) for i in keys]
    else:
        keys = archs = [searched.to_string(arch) for arch in chosen]
    conditions = conditions_of(device).for_space(searched.name)
    measured = measured_latencies(session, device.id, conditions.key) if calibration else {}
    by_position = keyed_by_position(searched.name)
    known: set[str] = {searched.to_string(reference[k]) if by_position else str(k) for k in measured}
    extra = _random_archs(searched, calibration, seed, set(archs) | known)  # new archs: each adaptation adds R
    batch = batches.submit_batch(
        session,
        device,
        archs + extra,
        space=searched.name,
        fmt=fmt,
        requested_by=requested_by,
        conditions=conditions,
        drawn_at_random=extra,
    )
    adaptation = Adaptation(
        device_id=device.id,
        samples=samples,
        calibration=calibration,
        strategy="default",
        sample_archs=keys,
        batch_id=batch.id,
        checkpoint=predictor.version,
        conditions_key=conditions.key,
    )
    session.add(adaptation)
    session.flush()
    return adaptation


def _random_archs(searched, n: int, seed: int, taken: set[str]) -> list[str]:
    """``n`` distinct random arch strings of ``searched`` not in ``taken``, seeded: of its reference set where it has
    one (results then match the dataset's), else drawn from the whole space."""
    reference = searched.reference_set()
    if reference:
        order = np.random.default_rng(seed).permutation(len(reference))
        pool = (searched.to_string(reference[i]) for i in order)
    else:
        pool = (searched.to_string(arch) for arch in searched.sample(4 * n + len(taken), seed))
    out: list[str] = []
    for arch in pool:
        if len(out) == n:
            break
        if arch not in taken:
            taken.add(arch)
            out.append(arch)
    return out


def cancel(session: Session, device: Device, space: str) -> Adaptation:
    """Cancel the device's adaptation of ``space`` that is measuring, and its batch's queued and running jobs; the
    device's active adaptation stays. ``NothingToCancel`` when its latest one is not measuring (training: its
    measurements are in, it ends in seconds)."""
    adaptation = latest(session, device, space)
    if adaptation is None or not _claim(session, adaptation.id, AdaptState.measuring, AdaptState.cancelled):
        state = "none" if adaptation is None else adaptation.state.value
        raise NothingToCancel(f"device {device.name!r} has no {space} adaptation measuring to cancel (latest: {state})")
    if adaptation.batch_id:
        batches.cancel_batch(session, adaptation.batch_id)
    session.refresh(adaptation)
    adaptation.error = "cancelled on request"
    return adaptation


def describe(session: Session, adaptation: Adaptation | None) -> dict:
    """The ``predictor`` block of a device: state, progress, metrics, the conditions it was fitted under and
    whether they are still the device's (``current``: false means predictions no longer use it; adapt again)."""
    if adaptation is None:
        return {"state": "none"}
    device = session.get_one(Device, adaptation.device_id)
    space = space_of(adaptation.conditions_key)
    out = {
        "id": adaptation.id,
        "space": space,
        "state": adaptation.state.value,
        "conditions_key": adaptation.conditions_key,
        "current": adaptation.conditions_key == conditions_of(device).for_space(space).key,
        "samples": adaptation.samples,
        "calibration": adaptation.calibration,
        "checkpoint": adaptation.checkpoint,
        "created_at": iso_utc(adaptation.created_at),
        "activated_at": iso_utc(adaptation.activated_at),
        "metrics": adaptation.metrics,
        "error": adaptation.error,
    }
    if adaptation.batch_id:
        out["progress"] = batches.batch_progress(session, adaptation.batch_id)
    return out


def by_space(session: Session, device: Device) -> dict[str, dict]:
    """``describe`` of the device's latest adaptation of each space it has one of."""
    latest_of = {space: latest(session, device, space) for space in SPACES}
    return {space: describe(session, row) for space, row in latest_of.items() if row is not None}


def active_by_space(session: Session, device: Device) -> dict[str, dict]:
    """``describe`` of the device's active adaptation of each space it has one of (at most one per space: activating
    one supersedes the last), whatever came after it (a cancelled or failed one leaves it active); its ``current``
    says whether predictions use it."""
    rows = session.scalars(
        select(Adaptation).where(Adaptation.device_id == device.id, Adaptation.state == AdaptState.active)
    )
    return {space_of(row.conditions_key): describe(session, row) for row in rows}


def _sample_latencies(session: Session, adaptation: Adaptation) -> tuple[list, list[float], int]:
    """Median of the agent-measured latencies of each sampled arch on the device under the adaptation's conditions
    (in the device's statistic), by the keys of ``sample_archs``; and how many of those archs have an unstable
    measurement among them."""
    statistic = device_statistic(session, adaptation.device_id, adaptation.conditions_key)
    key = Arch.reference_index if keyed_by_position(space_of(adaptation.conditions_key)) else Arch.arch
    rows = session.execute(
        select(key, agent_latency(statistic), Measurement.unstable)
        .join(Arch, Arch.id == Measurement.arch_id)
        .where(
            Measurement.device_id == adaptation.device_id,
            key.in_(adaptation.sample_archs),
            Measurement.conditions_key == adaptation.conditions_key,
            Measurement.source == Source.measured,
            usable(),
        )
    ).all()
    by_key: dict[Any, list[float]] = {}
    unstable = set()
    for arch, latency_ms, flagged in rows:
        by_key.setdefault(arch, []).append(float(latency_ms))
        if flagged:
            unstable.add(arch)
    keys = sorted(by_key)
    return keys, [float(np.median(by_key[k])) for k in keys], len(unstable)


def _calibration_latencies(session: Session, adaptation: Adaptation, samples: set) -> tuple[list, list[float]]:
    """The archs (keys of its space) besides its ``samples`` that the device has a usable measurement of under the
    adaptation's conditions that no one chose (``measured_latencies(unchosen=True)``: imported, or of a job drawn at
    random), unstable ones too (as the samples: a busy device's spread is wider), and their latencies: a seeded
    random ``MAX_CALIBRATION_ARCHS`` of them when more. Only these calibrate: split conformal needs calibrating archs
    exchangeable with the unmeasured ones, and a search's picks (the predicted fastest) are not."""
    measured = measured_latencies(session, adaptation.device_id, adaptation.conditions_key, unchosen=True)
    keys = sorted(k for k in measured if k not in samples)
    if len(keys) > MAX_CALIBRATION_ARCHS:
        chosen = np.random.default_rng(adaptation.device_id).choice(len(keys), MAX_CALIBRATION_ARCHS, replace=False)
        keys = [keys[i] for i in sorted(chosen)]
    return keys, [measured[k].latency_ms for k in keys]


def _claim(session: Session, adaptation_id: str, from_state: AdaptState, to_state: AdaptState) -> bool:
    """Move one adaptation between states unless another replica did first."""
    result = session.execute(
        update(Adaptation).where(Adaptation.id == adaptation_id, Adaptation.state == from_state).values(state=to_state)
    )
    return cast("CursorResult[Any]", result).rowcount == 1  # an UPDATE's result is a cursor result


Predictors = Callable[[str], Any]
"""A space's pretrained predictor by space name (``PredictionService.predictor_loader``)."""


def advance(sessions: sessionmaker[Session], adaptation_id: str, predictors: Predictors) -> AdaptState:
    """One step of one adaptation: when its measurements are in, fit and activate it with its space's predictor."""
    with transaction(sessions) as session:
        adaptation = session.get(Adaptation, adaptation_id)
        if adaptation is None or adaptation.state != AdaptState.measuring:
            return adaptation.state if adaptation else AdaptState.failed
        states = dict(
            session.execute(
                select(Job.state, func.count()).where(Job.batch_id == adaptation.batch_id).group_by(Job.state)
            ).all()
        )
        if states.get(JobState.queued) or states.get(JobState.running):
            return AdaptState.measuring
        if states.get(JobState.cancelled):  # someone cancelled its batch: never fitted from old measurements
            if _claim(session, adaptation_id, AdaptState.measuring, AdaptState.cancelled):
                session.refresh(adaptation)
                adaptation.error = "its measurement batch was cancelled"
            return AdaptState.cancelled
        if not _claim(session, adaptation_id, AdaptState.measuring, AdaptState.training):
            return AdaptState.training
    try:
        return _fit(sessions, adaptation_id, predictors)
    except Exception as err:  # noqa: BLE001 - whatever fails after the claim fails this adaptation, never strands it
        log.exception("adaptation %s failed", adaptation_id)
        with transaction(sessions) as session:
            failed = session.get_one(Adaptation, adaptation_id)
            failed.state, failed.error = AdaptState.failed, f"fit failed: {err}"
        return AdaptState.failed


def _fit(sessions: sessionmaker[Session], adaptation_id: str, predictors: Predictors) -> AdaptState:
    """Fit and activate a claimed (``training``) adaptation, superseding the device's active one of its space; raises
    on any failure (``advance`` records it)."""
    with transaction(sessions) as session:
        adaptation = session.get_one(Adaptation, adaptation_id)  # this call just claimed it
        space = space_of(adaptation.conditions_key)
        keys, values, unstable = _sample_latencies(session, adaptation)
        if len(keys) < 3:
            adaptation.state = AdaptState.failed
            adaptation.error = f"only {len(keys)} of {adaptation.samples} sample archs were measured; need 3"
            return adaptation.state
        predictor = predictors(space)
        calibration_keys, calibration_ms = _calibration_latencies(session, adaptation, set(keys))
        if len(calibration_keys) < MIN_CALIBRATION_ARCHS:
            calibration_keys, calibration_ms = [], []
        archs = fit_archs(predictor, keys + calibration_keys)
        calibrating = [False] * len(keys) + [True] * len(calibration_keys)
        model, left_out = robust_adapt(predictor, archs, values + calibration_ms, calibrating)
        keep = [arch not in left_out for arch in archs.tolist()]
        outliers = [k for k, kept in zip(keys, keep, strict=False) if not kept]  # samples only
        keep_mask = np.asarray(keep[: len(keys)], dtype=bool)
        fitted, _ = model.predict(archs[: len(keys)][keep_mask])
        truth = np.asarray(values)[keep_mask]
        adaptation.params = model_state(model, space)
        adaptation.metrics = {
            "measured": len(keys),
            "unstable": unstable,  # sampled archs measured unstable (round medians too far apart: a busy device)
            "outliers": outliers,  # sampled archs left out of the fit (``domain.outliers``)
            "fit_mean_abs_rel_error": float(np.mean(np.abs(fitted - truth) / truth)),
            "calibration_archs": 0 if model.calibrating is None else int(model.calibrating.sum()),
            "std_factor": float(model.posterior.std_factor),
        }
        session.execute(
            update(Adaptation)
            .where(
                Adaptation.device_id == adaptation.device_id,
                Adaptation.state == AdaptState.active,
                of_space(space),
            )
            .values(state=AdaptState.superseded)
        )
        adaptation.state = AdaptState.active
        adaptation.activated_at = utcnow()
        return adaptation.state


def advance_all(sessions: sessionmaker[Session], predictors: Predictors) -> int:
    """Advance every adaptation waiting on measurements (``predictors(space)``: each one's predictor); returns how
    many became active."""
    with sessions() as session:
        ids = session.scalars(select(Adaptation.id).where(Adaptation.state == AdaptState.measuring)).all()
    return sum(advance(sessions, i, predictors) == AdaptState.active for i in ids)
