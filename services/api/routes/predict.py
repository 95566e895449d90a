"""Latency of archs on a device: measured when a measurement exists, else the predictor's estimate."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from latfarm.services.domain.predictions import NoEstimate, conditions_of

from ..auth import Principal, require
from ..deps import arch_indices, arch_strings, get_device, read_db
from ..schemas import ConditionsOut, PredictRequest, PredictResponse

router = APIRouter(prefix="/v1", tags=["predict"])


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@router.post("/predict", response_class=JSONResponse, responses={200: {"model": PredictResponse}})
def predict(
    body: PredictRequest,
    request: Request,
    session: Session = Depends(read_db),
    _: Principal = Depends(require("predict")),
) -> JSONResponse:
    """For each arch, in request order: its measured latency (latest stable agent measurement, else imported),
    else the device's predictor estimate; ``latency_ms`` is null with a ``message`` when there is neither.
    A device's agent measurements are all given in one ``statistic``: that of its latest measurement. Answers are
    for the device's conditions (``conditions`` in the response): figures measured under others are not used."""
    device = get_device(session, body.device)
    indices = arch_indices(body.archs, body.space)
    measured = request.app.state.predictions.measured(session, device, indices)
    missing = [i for i in indices if i not in measured]
    estimates, reason = None, None
    if missing:
        try:
            estimates = request.app.state.predictions.predict(session, device, missing)
        except NoEstimate as err:
            reason = str(err)
    predicted = {i: (m, s) for i, m, s in zip(missing, *estimates, strict=True)} if estimates else {}
    strings = arch_strings()
    items = []
    for index in indices:
        item = {"arch": strings[index], "nb201_index": index}
        if (hit := measured.get(index)) is not None:
            item |= {"latency_ms": hit.latency_ms, "std_ms": _number(hit.std_ms), "source": "measured"}
            item["origin"] = hit.origin
            if hit.statistic:
                item["statistic"] = hit.statistic
            if hit.unstable:
                item["unstable"] = True
        elif index in predicted:
            mean, std = predicted[index]
            item |= {"latency_ms": _number(mean), "std_ms": _number(std), "source": "predicted"}
        else:
            item |= {"latency_ms": None, "std_ms": None, "source": None, "message": reason}
        items.append(item)
    conditions = ConditionsOut.of(conditions_of(device)).model_dump()
    return JSONResponse({"device": device.name, "conditions": conditions, "items": items})
