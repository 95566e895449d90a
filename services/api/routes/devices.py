"""Devices, their enrollment tokens and agents, and exports of their measurements."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latfarm.services import datasets
from latfarm.services.core.clock import utcnow
from latfarm.services.core.errors import Conflict, FailedPrecondition
from latfarm.services.core.security import hash_secret, new_secret
from latfarm.services.domain import adaptation as adapt
from latfarm.services.domain.conditions import DEFAULT_SPACE, SPACES
from latfarm.services.domain.liveness import is_online, online_cutoff
from latfarm.services.store.models import Agent, ApiKey, Device, Enrollment, Measurement

from ..auth import Principal, require
from ..deps import db, get_device, request_space
from ..schemas import (
    AgentOut,
    DeviceCreate,
    DeviceDetail,
    DeviceListed,
    DeviceOut,
    DeviceOwner,
    EnrollmentCreate,
    EnrollmentOut,
)

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceOut)
def create_device(
    body: DeviceCreate, session: Session = Depends(db), principal: Principal = Depends(require("devices"))
) -> Device:
    """Register a device, owned by the key that creates it (409 when the name is taken)."""
    if session.scalar(select(Device.id).where(Device.name == body.name)) is not None:
        raise Conflict(f"name: device {body.name!r} already exists", field="name")
    device = Device(**body.model_dump(), owner_key_id=principal.key_id)
    session.add(device)
    try:
        session.commit()
    except IntegrityError as err:  # created concurrently
        raise Conflict(f"name: device {body.name!r} already exists", field="name") from err
    return device


@router.get("", response_model=list[DeviceListed])
def list_devices(
    request: Request, session: Session = Depends(db), _: Principal = Depends(require("read"))
) -> list[DeviceListed]:
    """All devices, by name, with their agents online (heartbeat within 2 intervals)."""
    cutoff = online_cutoff(request.app.state.settings.heartbeat_interval_s)
    online = dict(
        session.execute(
            select(Agent.device_id, func.count()).where(Agent.last_heartbeat >= cutoff).group_by(Agent.device_id)
        ).all()
    )
    return [
        DeviceListed(
            **DeviceOut.model_validate(device, from_attributes=True).model_dump(),
            agents_online=int(online.get(device.id, 0)),
        )
        for device in session.scalars(select(Device).order_by(Device.name))
    ]


@router.get("/{name}", response_model=DeviceDetail)
def device_detail(
    name: str, request: Request, session: Session = Depends(db), _: Principal = Depends(require("read"))
) -> DeviceDetail:
    """A device with its measurement counts per source, agents (online: heartbeat within 2 intervals), its latest
    adaptation (of any space, and per space) and its active one per space."""
    device = get_device(session, name)
    by_source = session.execute(
        select(Measurement.source, func.count()).where(Measurement.device_id == device.id).group_by(Measurement.source)
    )
    counts = {source.value: int(n) for source, n in by_source}
    counts["total"] = sum(counts.values())
    archs = session.scalar(
        select(func.count(func.distinct(Measurement.arch_id))).where(Measurement.device_id == device.id)
    )
    agents = session.scalar(select(func.count()).select_from(Agent).where(Agent.device_id == device.id))
    cutoff = online_cutoff(request.app.state.settings.heartbeat_interval_s)
    online = session.scalar(
        select(func.count()).select_from(Agent).where(Agent.device_id == device.id, Agent.last_heartbeat >= cutoff)
    )
    return DeviceDetail(
        **DeviceOut.model_validate(device, from_attributes=True).model_dump(),
        measurements=counts,
        archs_measured=int(archs or 0),
        agents=int(agents or 0),
        agents_online=int(online or 0),
        predictor=adapt.describe(session, adapt.latest(session, device)),
        predictors=adapt.by_space(session, device),
        active=adapt.active_by_space(session, device),
    )


@router.post("/{name}/enrollments", status_code=201, response_model=EnrollmentOut)
def create_enrollment(
    name: str,
    request: Request,
    body: EnrollmentCreate | None = None,
    session: Session = Depends(db),
    principal: Principal = Depends(require("devices")),
) -> EnrollmentOut:
    """A token agents register with for this device (its owner or an admin only): it expires after ``expires_in_s``
    (default ``LATFARM_ENROLLMENT_TTL_H``) and registers at most ``max_uses`` agents when set."""
    expires_in_s, max_uses = (body.expires_in_s, body.max_uses) if body else (None, None)
    device = get_device(session, name)
    principal.check_device("devices", device)
    lifetime = expires_in_s or request.app.state.settings.enrollment_ttl_h * 3600
    expires_at = utcnow() + timedelta(seconds=lifetime)
    token = new_secret("lf_enroll")
    session.add(
        Enrollment(
            device_id=device.id,
            token_hash=hash_secret(token),
            created_by=principal.name,
            expires_at=expires_at,
            max_uses=max_uses,
        )
    )
    session.commit()
    return EnrollmentOut(token=token, device=device.name, expires_at=expires_at, max_uses=max_uses)


@router.put("/{name}/owner", response_model=DeviceOut)
def set_owner(
    name: str, body: DeviceOwner, session: Session = Depends(db), _: Principal = Depends(require("admin"))
) -> Device:
    """Give the device to another API key, or to admins only (``key_id`` null); 409 for a key that does not exist
    (404 is the device's: a fuzzer, like a client, reads a 404 here as the device gone)."""
    device = get_device(session, name)
    if body.key_id is not None and session.get(ApiKey, body.key_id) is None:
        raise FailedPrecondition(f"key_id: no API key has id {body.key_id}", field="key_id")
    device.owner_key_id = body.key_id
    session.commit()
    return device


@router.get("/{name}/agents", response_model=list[AgentOut])
def list_agents(
    name: str, request: Request, session: Session = Depends(db), _: Principal = Depends(require("read"))
) -> list[AgentOut]:
    """The device's agents, oldest registration first, with their liveness."""
    device = get_device(session, name)
    interval = request.app.state.settings.heartbeat_interval_s
    agents = session.scalars(select(Agent).where(Agent.device_id == device.id).order_by(Agent.registered_at))
    return [
        AgentOut(
            id=agent.id,
            name=agent.name,
            state=agent.state,
            online=is_online(agent, interval),
            last_heartbeat=agent.last_heartbeat,
            registered_at=agent.registered_at,
            descriptor=agent.descriptor or {},
        )
        for agent in agents
    ]


@router.get(
    "/{name}/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}, "application/octet-stream": {}},
            "headers": {
                "X-Measurements": {
                    "description": "How many entries the file holds: CSV lines (one per measurement) or LatBench "
                    "entries (one per arch, the median of its measurements).",
                    "schema": {"type": "integer"},
                }
            },
        }
    },
)
def export_device(
    name: str,
    format: str = Query("csv", pattern="^(csv|latbench)$", description="csv | latbench (pickle)"),
    space: str = Query(
        DEFAULT_SPACE,
        description="Search space of the exported archs (registered in latfarm.predictor.spaces).",
        json_schema_extra={"enum": list(SPACES)},
    ),
    session: Session = Depends(db),
    _: Principal = Depends(require("read")),
) -> Response:
    """The device's measurements of one space as an attachment: CSV (every row, with its conditions and cold-start
    figures) or a LatBench pickle (its layout has no conditions: only the rows measured under the device's own);
    ``X-Measurements``: how many entries it holds (CSV: measurements; LatBench: archs). 422 naming ``space`` for an
    unknown space or one the device has no measurements of while it has others."""
    device = get_device(session, name)
    rows = datasets.device_rows(
        session, device.name, own_conditions=format == "latbench", space=request_space(space).name
    )
    body, entries = datasets.export_file(rows, format, space)
    media_type, suffix = ("text/csv", "csv") if format == "csv" else ("application/octet-stream", "pickle")
    headers = {"Content-Disposition": _attachment(f"{device.name}.{suffix}"), "X-Measurements": str(entries)}
    return Response(body, media_type=media_type, headers=headers)


def _attachment(filename: str) -> str:
    """A ``Content-Disposition`` header safe for any stored name (headers are latin-1; names from before the name
    rule may hold anything): an ASCII ``filename`` with other characters as ``_`` plus RFC 5987's UTF-8
    ``filename*``."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
