"""Ranking of archs on a device, fastest first: ``/v1/rank``."""

from __future__ import annotations

from typing import cast

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import get_space
from latfarm.services.domain.prediction_tables import Table, item_openings, json_number
from latfarm.services.domain.predictions import NoEstimate, keyed_by_position
from latfarm.services.store.models import Device

from ..auth import Principal, require
from ..deps import get_device, get_device_table, request_keys
from ..schemas import PredictRequest, RankResponse
from .predict import arch_items, conditions_block, items_response

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post("/rank", response_class=JSONResponse, responses={200: {"model": RankResponse}})
def rank(
    body: PredictRequest,
    request: Request,
    _: Principal = Depends(require("predict")),
) -> Response:
    """Archs of ``space`` ordered fastest first on a device: measured latencies where known, else predicted ones;
    ties and predicted-vs-predicted pairs are ordered by the pairwise (binary-relation) model. Ranked under the
    device's conditions for the space (``conditions`` in the response)."""
    with request.app.state.read_sessions() as session:  # opened and closed in this call's thread: no extra hops
        return _rank(session, request, body)


def _rank(session: Session, request: Request, body: PredictRequest) -> Response:
    table = None
    if keyed_by_position(body.space):
        device, table = get_device_table(request, session, body.device, body.space)
    else:
        device = get_device(session, body.device)
    all_keys, all_strings = request_keys(body.archs, body.space)
    first: dict[int | str, int] = {k: n for n, k in reversed(list(enumerate(all_keys)))}  # each arch once, in order
    keys = list(first)
    strings = [all_strings[first[k]] for k in keys]
    head = {"device": device.name, "space": body.space, "conditions": conditions_block(device, body.space)}
    if table is not None:
        ranked = _ranked_from_table(request, session, device, table, cast("list[int]", keys))
        return items_response(head, ranked)
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
    return JSONResponse(head | {"items": items})


def _ranked_from_table(request: Request, session: Session, device: Device, table: Table, keys: list[int]) -> bytes:
    """The ranked items of distinct reference positions ``keys`` as a JSON array, from the device's table: by
    latency (measured, else estimated), the estimated archs among themselves in the model's order."""
    service, space = request.app.state.predictions, table.head.space
    positions = np.asarray(keys, dtype=np.int64)
    measured = np.fromiter((k in table.measured for k in keys), dtype=bool, count=len(keys))
    if table.predicted is None and not measured.all():
        raise NoEstimate(table.reason or "no estimate")
    latency, std = table.latency_ms[positions], table.std_ms[positions]
    order = np.argsort(latency, kind="stable")
    if table.predicted is not None:  # the model's order among the estimated archs (``DeviceModel.rank``)
        estimated = order[~measured[order]]
        means = service.rank_means(session, device, space, table)[positions[estimated]]
        order[~measured[order]] = estimated[np.argsort(means, kind="stable")]
    openings = item_openings(space)
    parts = []
    for r, n in enumerate(order.tolist()):
        if measured[n]:
            figures = f'"latency_ms":{json_number(latency[n])},"std_ms":null,"source":"measured"'
        else:
            figures = f'"latency_ms":{json_number(latency[n])},"std_ms":{json_number(std[n])},"source":"predicted"'
        parts.append(f'{{"rank":{r + 1},{openings[keys[n]][1:]},{figures}}}')
    return ("[" + ",".join(parts) + "]").encode()
