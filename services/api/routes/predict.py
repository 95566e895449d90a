"""Latency of archs on a device: measured when a measurement exists, else the predictor's estimate."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import get_space
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.prediction_tables import Table
from latfarm.services.domain.predictions import NoEstimate, PredictionService, conditions_of, keyed_by_position
from latfarm.services.store.models import Device

from ..auth import Principal, require
from ..deps import get_device, get_device_table, request_keys, request_positions
from ..schemas import ConditionsOut, PredictRequest, PredictResponse

router = APIRouter(prefix="/v1", tags=["predict"])


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def arch_items(space: str, keys: Sequence, strings: list[str]) -> list[dict]:
    """The identity of each requested arch in a response: its canonical ``arch``, its reference-set ``index``
    (null when none) and, for NB201, its ``nb201_index``."""
    if space == nb201.SPACE:
        return [{"arch": arch, "index": key, "nb201_index": key} for key, arch in zip(keys, strings, strict=True)]
    searched = get_space(space)
    return [{"arch": arch, "index": searched.index_of(arch)} for arch in strings]


def conditions_block(device: Device, space: str) -> dict:
    """The answer's ``conditions``: the device's measurement conditions for ``space`` (``ConditionsOut``)."""
    return ConditionsOut.of(conditions_of(device).for_space(space)).model_dump()


def items_response(head: dict, items: bytes) -> Response:
    """The JSON object ``head`` with ``items``, an already encoded JSON array, as its last member."""
    return Response(json.dumps(head)[:-1].encode() + b',"items":' + items + b"}", media_type="application/json")


@router.post("/predict", response_class=JSONResponse, responses={200: {"model": PredictResponse}})
async def predict(
    body: PredictRequest,
    request: Request,
    _: Principal = Depends(require("predict")),
) -> Response:
    """For each arch of ``space``, in request order: its measured latency (latest stable agent measurement, else
    imported), else the device's predictor estimate for that space; ``latency_ms`` is null with a ``message`` when
    there is neither. A device's agent measurements are all given in one ``statistic``: that of its latest
    measurement. Answers are for the device's conditions for the space (``conditions`` in the response): figures
    measured under others are not used. Any valid arch is predicted, not only those of a dataset."""
    # its own threads, not a sync route's AnyIO hop: the same work off the loop for a third of the hop's CPU
    return await asyncio.get_running_loop().run_in_executor(request.app.state.predict_pool, _answer, request, body)


def _answer(request: Request, body: PredictRequest) -> Response:
    service: PredictionService = request.app.state.predictions
    if keyed_by_position(body.space) and (found := service.current_table(body.device, body.space)) is not None:
        return table_response(*found, body.space, body.archs)  # the table in memory is current: no session
    with request.app.state.read_sessions() as session:  # opened and closed in this call's thread: no extra hops
        return _predict(session, request, body)


def table_response(device: Device, table: Table, space: str, archs: Sequence[str | int | Sequence[int]]) -> Response:
    """The answer for ``archs`` (valid in position-keyed ``space``) from the device's current ``table``."""
    keys = request_positions(archs, space)
    if keys is None:
        keys = cast("list[int]", request_keys(archs, space)[0])
    return Response(
        _head_json(device.name, space, conditions_of(device).for_space(space)) + table.items_json(keys) + b"}",
        media_type="application/json",
    )


@lru_cache(maxsize=256)
def _head_json(device: str, space: str, conditions: Conditions) -> bytes:
    """The encoded opening of a table answer, up to its ``items`` array."""
    head = {"device": device, "space": space, "conditions": ConditionsOut.of(conditions).model_dump()}
    return json.dumps(head)[:-1].encode() + b',"items":'


def _predict(session: Session, request: Request, body: PredictRequest) -> Response:
    service = request.app.state.predictions
    if keyed_by_position(body.space):
        return table_response(*get_device_table(request, session, body.device, body.space), body.space, body.archs)
    device = get_device(session, body.device)
    keys, strings = request_keys(body.archs, body.space)
    conditions = conditions_block(device, body.space)
    measured = service.measured(session, device, keys, body.space)
    missing = [k for k in keys if k not in measured]
    estimates, reason = None, None
    if missing:
        try:
            estimates = service.predict(session, device, missing, body.space)
        except NoEstimate as err:
            reason = str(err)
    predicted = {k: (m, s) for k, m, s in zip(missing, *estimates, strict=True)} if estimates else {}
    items = []
    for key, item in zip(keys, arch_items(body.space, keys, strings), strict=True):
        if (hit := measured.get(key)) is not None:
            item |= hit.item_fields()
        elif key in predicted:
            mean, std = predicted[key]
            item |= {"latency_ms": _number(mean), "std_ms": _number(std), "source": "predicted"}
        else:
            item |= {"latency_ms": None, "std_ms": None, "source": None, "message": reason}
        items.append(item)
    return JSONResponse({"device": device.name, "space": body.space, "conditions": conditions, "items": items})
