"""Ranking of archs on a device, fastest first: ``/v1/rank``."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.domain.predictions import NoEstimate, conditions_of

from ..auth import Principal, require
from ..deps import arch_indices, arch_strings, get_device, read_db
from ..schemas import ConditionsOut, PredictRequest, RankResponse

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/rank", response_class=JSONResponse, responses={200: {"model": RankResponse}})
def rank(
    body: PredictRequest,
    request: Request,
    session: Session = Depends(read_db),
    _: Principal = Depends(require("predict")),
) -> JSONResponse:
    """Archs ordered fastest first on a device: measured latencies where known, else predicted ones; ties and
    predicted-vs-predicted pairs are ordered by the pairwise (binary-relation) model. Ranked under the device's
    conditions (``conditions`` in the response)."""
    device = get_device(session, body.device)
    indices = list(dict.fromkeys(arch_indices(body.archs, body.space)))
    service = request.app.state.predictions
    measured = service.measured(session, device, indices)
    try:
        mean, std = service.predict(session, device, indices)
    except NoEstimate:
        if len(measured) < len(indices):
            raise
        mean, std = np.full(len(indices), np.nan), np.full(len(indices), np.nan)
    latency = np.array([measured[i].latency_ms if i in measured else m for i, m in zip(indices, mean, strict=True)])
    model = service.for_device(session, device)
    order = list(np.argsort(latency, kind="stable"))
    if model is not None:  # let the pairwise model order the predicted archs among themselves
        predicted = [k for k in order if indices[k] not in measured]
        ranked = model.rank([indices[k] for k in predicted])
        slot = {index: pos for pos, index in enumerate(ranked)}
        predicted_sorted = sorted(predicted, key=lambda k: slot[indices[k]])
        it = iter(predicted_sorted)
        order = [k if indices[k] in measured else next(it) for k in order]
    strings = arch_strings()
    items = [
        {
            "rank": r + 1,
            "arch": strings[indices[k]],
            "nb201_index": indices[k],
            "latency_ms": float(latency[k]),
            "std_ms": None if indices[k] in measured else float(std[k]),
            "source": "measured" if indices[k] in measured else "predicted",
        }
        for r, k in enumerate(order)
    ]
    conditions = ConditionsOut.of(conditions_of(device)).model_dump()
    return JSONResponse({"device": device.name, "space": nb201.SPACE, "conditions": conditions, "items": items})
