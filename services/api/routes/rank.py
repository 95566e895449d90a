"""Ranking of archs on a device, fastest first: ``/v1/rank``."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import get_space
from latfarm.services.domain.predictions import NoEstimate, conditions_of

from ..auth import Principal, require
from ..deps import get_device, read_db, request_keys
from ..schemas import ConditionsOut, PredictRequest, RankResponse
from .predict import arch_items

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/rank", response_class=JSONResponse, responses={200: {"model": RankResponse}})
def rank(
    body: PredictRequest,
    request: Request,
    session: Session = Depends(read_db),
    _: Principal = Depends(require("predict")),
) -> JSONResponse:
    """Archs of ``space`` ordered fastest first on a device: measured latencies where known, else predicted ones;
    ties and predicted-vs-predicted pairs are ordered by the pairwise (binary-relation) model. Ranked under the
    device's conditions for the space (``conditions`` in the response)."""
    device = get_device(session, body.device)
    all_keys, all_strings = request_keys(body.archs, body.space)
    first: dict[int | str, int] = {k: n for n, k in reversed(list(enumerate(all_keys)))}  # each arch once, in order
    keys = list(first)
    strings = [all_strings[first[k]] for k in keys]
    service = request.app.state.predictions
    measured = service.measured(session, device, keys, body.space)
    try:
        mean, std = service.predict(session, device, keys, body.space)
    except NoEstimate:
        if len(measured) < len(keys):
            raise
        mean, std = np.full(len(keys), np.nan), np.full(len(keys), np.nan)
    latency = np.array([measured[k].latency_ms if k in measured else m for k, m in zip(keys, mean, strict=True)])
    model = service.for_device(session, device, body.space)
    order = list(np.argsort(latency, kind="stable"))
    if model is not None:  # let the pairwise model order the predicted archs among themselves
        searched = get_space(body.space)
        predicted = [n for n in order if keys[n] not in measured]
        ranked = model.rank([keys[n] for n in predicted])
        slot: dict[int | str, int] = {
            key if isinstance(key, int) else searched.to_string(key): pos for pos, key in enumerate(ranked)
        }
        predicted_sorted = sorted(predicted, key=lambda n: slot[keys[n]])
        it = iter(predicted_sorted)
        order = [n if keys[n] in measured else next(it) for n in order]
    identities = arch_items(body.space, keys, strings)
    items = [
        {
            "rank": r + 1,
            **identities[n],
            "latency_ms": float(latency[n]),
            "std_ms": None if keys[n] in measured else float(std[n]),
            "source": "measured" if keys[n] in measured else "predicted",
        }
        for r, n in enumerate(order)
    ]
    conditions = ConditionsOut.of(conditions_of(device).for_space(body.space)).model_dump()
    return JSONResponse({"device": device.name, "space": body.space, "conditions": conditions, "items": items})
