"""Measurements by device / arch / source / conditions, paged by an opaque cursor."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import ColumnElement, and_, false, select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import SPACES as REGISTERED
from latfarm.services.domain import review
from latfarm.services.domain.conditions import DEFAULT_SPACE, Conditions
from latfarm.services.domain.results import FIGURES, FIRST_USE, SETUP, attributes, statistic_of
from latfarm.services.store.models import Arch, Device, Measurement, Source

from ..auth import Principal, require
from ..deps import db, get_device, request_arch, request_space
from ..schemas import ARCH_QUERY_PATTERN, ConditionsOut, MeasurementOut, MeasurementPage, MeasurementReview, Space

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])
MEASUREMENT_ID = Path(ge=1, le=2**63 - 1, description="The measurement's id.")


CURSOR_PATTERN = r"^m[0-9]{1,18}$"  # every string of this form is a cursor (an id past the end gives an empty page)


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of the page after measurement ``last_id``."""
    return f"m{last_id}"


def decode_cursor(cursor: str) -> int:
    """The measurement id a cursor from ``encode_cursor`` (``CURSOR_PATTERN``) stands for."""
    return int(cursor[1:])


@router.get("", response_model=MeasurementPage)
def list_measurements(
    device: str | None = Query(None, description="Device name."),
    space: Space | None = Query(None, description="Search space; default: the space of 'arch' (a position: nb201)."),
    arch: str | None = Query(
        None,
        pattern=ARCH_QUERY_PATTERN,
        description="Arch string, or position in the space's reference set (NB201: official index; FBNet: HELP's); "
        "without 'space', the space whose strings it has the form of (a position: nb201). An arch of another "
        "space's form than 'space' matches nothing.",
    ),
    source: Source | None = Query(None),
    quarantined: bool | None = Query(None, description="Only quarantined (true) or usable (false) rows."),
    conditions_key: str | None = Query(
        None, description="Only rows measured under these conditions, e.g. nb201/32px/10cls/b1/fp32/reference."
    ),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, pattern=CURSOR_PATTERN, description="The 'next' value of the previous page."),
    session: Session = Depends(db),
    _: Principal = Depends(require("read")),
) -> MeasurementPage:
    """Measurements filtered by device, space, arch, source and conditions key, ``limit`` per page; ``next`` pages
    on. Each item carries its conditions and its cold-start figures (agent rows)."""
    query = (
        select(Measurement, Device.name, Arch.arch, Arch.reference_index)
        .join(Device, Device.id == Measurement.device_id)
        .join(Arch, Arch.id == Measurement.arch_id)
        .order_by(Measurement.id)
        .limit(limit + 1)
    )
    if device is not None:
        query = query.where(Measurement.device_id == get_device(session, device).id)
    if space is not None:
        query = query.where(Arch.space == request_space(space).name)
    if arch is not None:
        query = query.where(_arch_filter(arch, space))
    if source is not None:
        query = query.where(Measurement.source == source)
    if quarantined is not None:
        query = query.where(Measurement.quarantined.is_(quarantined))
    if conditions_key is not None:
        query = query.where(Measurement.conditions_key == conditions_key)
    if cursor:
        query = query.where(Measurement.id > decode_cursor(cursor))
    rows = session.execute(query).all()
    items = [measurement_out(m, device_name, arch_string, index) for m, device_name, arch_string, index in rows[:limit]]
    return MeasurementPage(items=items, next=encode_cursor(items[-1].id) if len(rows) > limit else None)


def _arch_filter(arch: str, space: str | None) -> ColumnElement[bool]:
    """The rows of ``arch`` (``ARCH_QUERY_PATTERN``) in ``space``, or in the space of its form when ``space`` is
    None: its canonical string, or its position in the space's reference set (stored with each arch as its reference
    index). A string not of ``space``'s form matches nothing; a position outside the set, or a string of its form
    that is no arch of it, is refused (``InvalidArgument``, as predictions refuse it)."""
    if arch.isdigit():
        searched = request_space(space or DEFAULT_SPACE)
        request_arch(int(arch), searched.name)
        return and_(Arch.space == searched.name, Arch.reference_index == int(arch))
    forms = [s for s in REGISTERED.values() if re.fullmatch(s.string_pattern, arch)]
    searched = request_space(space) if space is not None else forms[0]
    if searched not in forms:
        return false()
    canonical = request_arch(arch, searched.name)
    return and_(Arch.space == searched.name, Arch.arch == canonical)


@router.post("/{measurement_id}/quarantine", response_model=MeasurementOut)
def quarantine(
    body: MeasurementReview,
    measurement_id: int = MEASUREMENT_ID,
    session: Session = Depends(db),
    principal: Principal = Depends(require("admin")),
) -> MeasurementOut:
    """Quarantine a measurement (admin): it is kept and listed, but no prediction, ranking, adaptation or export
    reads it. Audited."""
    return _review(session, measurement_id, True, principal, body)


@router.post("/{measurement_id}/release", response_model=MeasurementOut)
def release(
    body: MeasurementReview,
    measurement_id: int = MEASUREMENT_ID,
    session: Session = Depends(db),
    principal: Principal = Depends(require("admin")),
) -> MeasurementOut:
    """Release a quarantined measurement (admin): estimates read it again. Audited."""
    return _review(session, measurement_id, False, principal, body)


def _review(
    session: Session, measurement_id: int, quarantined: bool, principal: Principal, body: MeasurementReview
) -> MeasurementOut:
    """Quarantine or release a measurement (``review.set_quarantined``, audited under the key's name); the row
    as it is now."""
    review.set_quarantined(session, measurement_id, quarantined, principal.name, body.reason)
    session.commit()
    return one_measurement(session, measurement_id)


@router.delete("/{measurement_id}", status_code=204)
def delete_measurement(
    measurement_id: int = MEASUREMENT_ID,
    reason: str = Query("", max_length=500, description="Why (kept in the audit log)."),
    session: Session = Depends(db),
    principal: Principal = Depends(require("admin")),
) -> None:
    """Delete a measurement for good (admin). Audited."""
    review.delete(session, measurement_id, principal.name, reason)
    session.commit()


def one_measurement(session: Session, measurement_id: int) -> MeasurementOut:
    """Measurement ``measurement_id`` as the REST API shows it."""
    m, device_name, arch_string, index = session.execute(
        select(Measurement, Device.name, Arch.arch, Arch.reference_index)
        .join(Device, Device.id == Measurement.device_id)
        .join(Arch, Arch.id == Measurement.arch_id)
        .where(Measurement.id == measurement_id)
    ).one()
    return measurement_out(m, device_name, arch_string, index)


def measurement_out(m: Measurement, device: str, arch: str, index: int | None) -> MeasurementOut:
    """A stored measurement as the REST API shows it (the one ``Measurement`` -> response mapping); ``index`` is
    the arch's reference position."""
    conditions = Conditions.from_dict(m.conditions)
    return MeasurementOut(
        id=m.id,
        device=device,
        arch=arch,
        index=index,
        nb201_index=index if conditions.space == nb201.SPACE else None,
        source=m.source.value,
        dataset=m.dataset,
        latency_ms=m.latency_ms,
        statistic=statistic_of(m.protocol),
        agent_id=m.agent_id,
        job_id=m.job_id,
        created_at=m.created_at,
        conditions=ConditionsOut.of(conditions),
        quarantined=m.quarantined,
        **attributes(m, FIGURES + SETUP + FIRST_USE),
    )
