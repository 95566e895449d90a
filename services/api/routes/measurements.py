"""Measurements by device / arch / source / conditions, paged by an opaque cursor."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.results import FIGURES, FIRST_USE, SETUP, attributes
from latfarm.services.store.models import Arch, Device, Measurement, Source

from ..auth import Principal, require
from ..deps import db, get_device, request_archs, request_space
from ..schemas import ConditionsOut, MeasurementOut, MeasurementPage

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of the page after measurement ``last_id``."""
    return base64.urlsafe_b64encode(f"m:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The measurement id a cursor from ``encode_cursor`` stands for; ``InvalidArgument`` when it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "m":
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidArgument("cursor: not a cursor from a previous page's 'next'", field="cursor") from err


@router.get("", response_model=MeasurementPage)
def list_measurements(
    device: str | None = Query(None, description="Device name."),
    space: str | None = Query(None, description="Search space (nb201 | fbnet); the space of 'arch' (default nb201)."),
    arch: str | None = Query(
        None, description="Arch string, or position in the space's reference set (FBNet: in the imported dataset)."
    ),
    source: Source | None = Query(None),
    conditions_key: str | None = Query(
        None, description="Only rows measured under these conditions, e.g. nb201/32px/10cls/b1/fp32/reference."
    ),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, description="The 'next' value of the previous page."),
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
        searched = request_space(space or nb201.SPACE)
        if arch.strip().isdigit() and searched.reference_set() is None:  # positions of the stored (imported) archs
            query = query.where(Arch.space == searched.name, Arch.reference_index == int(arch))
        else:
            (canonical,) = request_archs([int(arch) if arch.strip().isdigit() else arch], searched.name, "arch")
            query = query.where(Arch.space == searched.name, Arch.arch == canonical)
    if source is not None:
        query = query.where(Measurement.source == source)
    if conditions_key is not None:
        query = query.where(Measurement.conditions_key == conditions_key)
    if cursor:
        query = query.where(Measurement.id > decode_cursor(cursor))
    rows = session.execute(query).all()
    items = [measurement_out(m, device_name, arch_string, index) for m, device_name, arch_string, index in rows[:limit]]
    return MeasurementPage(items=items, next=encode_cursor(items[-1].id) if len(rows) > limit else None)


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
        statistic=(m.protocol or {}).get("statistic"),
        agent_id=m.agent_id,
        job_id=m.job_id,
        created_at=m.created_at,
        conditions=ConditionsOut.of(conditions),
        **attributes(m, FIGURES + SETUP + FIRST_USE),
    )
