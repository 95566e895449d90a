"""Few-shot transfer of the predictor to a device: ``/v1/devices/{name}/adapt``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, Field, WithJsonSchema
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.calibration import MAX_CALIBRATION_ARCHS, MIN_CALIBRATION_ARCHS
from latfarm.services.domain import adaptation as adapt
from latfarm.services.domain.samples import (
    DEFAULT_SAMPLES,
    MAX_SAMPLES,
    MIN_SAMPLES,
    check_calibration,
    check_samples,
)
from latfarm.services.store.crud import active_adaptation

from ..auth import Principal, require
from ..deps import db, get_device, request_space
from ..schemas import FORMAT_DESCRIPTION, WHOLE, ModelFormat, Space, Strict

router = APIRouter(prefix="/v1", tags=["predict"])


class AdaptRequest(Strict):
    """Which space's predictor to adapt, how many archs to measure for it (K fitted, R random ones calibrating its
    spread), chosen with which seed, in which model format."""

    space: Space = Field(nb201.SPACE, description="Search space whose predictor is adapted: nb201 | fbnet.")

    samples: Annotated[
        int,
        AfterValidator(check_samples),
        WHOLE,
        WithJsonSchema({"type": "integer", "minimum": MIN_SAMPLES, "maximum": MAX_SAMPLES}),
    ] = Field(DEFAULT_SAMPLES, description=f"K archs to measure on the device, {MIN_SAMPLES}-{MAX_SAMPLES}.")
    calibration: Annotated[
        int,
        AfterValidator(check_calibration),
        WHOLE,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "const": 0},
                    {"type": "integer", "minimum": MIN_CALIBRATION_ARCHS, "maximum": MAX_CALIBRATION_ARCHS},
                ]
            }
        ),
    ] = Field(
        0,
        description=(
            f"R random other archs to measure too, fitted with the K: their leave-one-out errors set the spread "
            f"(std_ms) factor; 0 or "
            f"{MIN_CALIBRATION_ARCHS}-{MAX_CALIBRATION_ARCHS}."
        ),
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), WHOLE] = Field(
        0, description="Seed of the sample selection (trials differ by seed)."
    )
    format: ModelFormat | None = Field(None, description=FORMAT_DESCRIPTION)


@router.post("/devices/{name}/adapt", status_code=202)
def start_adaptation(
    name: str,
    body: AdaptRequest,
    request: Request,
    session: Session = Depends(db),
    principal: Principal = Depends(require("devices")),
) -> dict:
    """Choose K archs of the space (and R random others to calibrate the spread), queue their measurement on the
    device's agents (under its conditions for the space); the space's predictor adapts when they are in. The
    device's owner or an admin (it changes what the device serves)."""
    device = get_device(session, name)
    principal.check_device("devices", device)
    predictor = request.app.state.predictions.predictor(request_space(body.space).name)
    adaptation = adapt.start(
        session,
        device,
        predictor,
        samples=body.samples,
        calibration=body.calibration,
        seed=body.seed,
        fmt=body.format,
        requested_by=principal.name,
    )
    session.commit()
    request.app.state.notifier.notify(device.id)
    return adapt.describe(session, adaptation)


@router.post("/devices/{name}/adapt/cancel")
def cancel_adaptation(
    name: str,
    space: Annotated[Space, Query(description="Space whose adaptation is cancelled: nb201 | fbnet.")] = nb201.SPACE,
    session: Session = Depends(db),
    principal: Principal = Depends(require("devices")),
) -> dict:
    """Cancel the device's adaptation of the space while it is measuring, with its queued and running jobs (done
    ones keep their results); the device's active adaptation stays in use (``active_in_use``: whether it has one).
    409 when none is measuring. The device's owner or an admin."""
    device = get_device(session, name)
    principal.check_device("devices", device)
    cancelled = adapt.cancel(session, device, request_space(space).name)
    session.commit()
    in_use = active_adaptation(session, device, cancelled.conditions_key) is not None
    return adapt.describe(session, cancelled) | {"active_in_use": in_use}


@router.get("/devices/{name}/adapt")
def adaptation_status(
    name: str,
    space: Space | None = Query(None, description="Only adaptations of this space (default: of any)."),
    session: Session = Depends(db),
    _: Principal = Depends(require("read")),
) -> dict:
    """The device's latest adaptation (of ``space`` when given): its space, state (none, measuring, training,
    active, failed, cancelled), progress, metrics."""
    device = get_device(session, name)
    searched = request_space(space).name if space is not None else None
    return adapt.describe(session, adapt.latest(session, device, searched))
