"""Latency of archs on a device: measured when a measurement exists, else the predictor's estimate."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import get_space
from latfarm.services.domain.prediction_tables import Table
from latfarm.services.domain.predictions import (
    Measured,
    NoEstimate,
    conditions_of,
    keyed_by_position,
    reference_positions,
)

from ..auth import Principal, require
from ..deps import arch_strings, get_device, read_db, request_keys
from ..schemas import ConditionsOut, PredictRequest, PredictResponse

router = APIRouter(prefix="/v1", tags=["predict"])


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def arch_items(session: Session, space: str, keys: Sequence, strings: list[str]) -> list[dict]:
    """The identity of each requested arch in a response: its canonical ``arch``, its reference-set ``index``
    (null when none) and, for NB201, its ``nb201_index``."""
    if space == nb201.SPACE:
        return [{"arch": arch, "index": key, "nb201_index": key} for key, arch in zip(keys, strings, strict=True)]
    positions = reference_positions(session, space, strings)
    return [{"arch": arch, "index": positions.get(arch)} for arch in strings]


@router.post("/predict", response_class=JSONResponse, responses={200: {"model": PredictResponse}})
def predict(
    body: PredictRequest,
    request: Request,
    session: Session = Depends(read_db),
    _: Principal = Depends(require("predict")),
) -> Response:
    """For each arch of ``space``, in request order: its measured latency (latest stable agent measurement, else
    imported), else the device's predictor estimate for that space; ``latency_ms`` is null with a ``message`` when
    there is neither. A device's agent measurements are all given in one ``statistic``: that of its latest
    measurement. Answers are for the device's conditions for the space (``conditions`` in the response): figures
    measured under others are not used. Any valid arch is predicted, not only those of a dataset."""
    device = get_device(session, body.device)
    keys, strings = request_keys(body.archs, body.space)
    service = request.app.state.predictions
    conditions = ConditionsOut.of(conditions_of(device).for_space(body.space)).model_dump()
    if keyed_by_position(body.space):
        table = service.table(session, device, body.space)
        encoded = encoded_items(table, body.space, cast("list[int]", keys))
        head = json.dumps({"device": device.name, "space": body.space, "conditions": conditions})
        return Response(head[:-1].encode() + b',"items":' + encoded + b"}", media_type="application/json")
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
    for key, item in zip(keys, arch_items(session, body.space, keys, strings), strict=True):
        if (hit := measured.get(key)) is not None:
            item |= measured_fields(hit)
        elif key in predicted:
            mean, std = predicted[key]
            item |= {"latency_ms": _number(mean), "std_ms": _number(std), "source": "predicted"}
        else:
            item |= {"latency_ms": None, "std_ms": None, "source": None, "message": reason}
        items.append(item)
    return JSONResponse({"device": device.name, "space": body.space, "conditions": conditions, "items": items})


def measured_fields(hit: Measured) -> dict:
    """The fields of a response item a measurement gives."""
    fields = {"latency_ms": hit.latency_ms, "std_ms": _number(hit.std_ms), "source": "measured", "origin": hit.origin}
    if hit.statistic:
        fields["statistic"] = hit.statistic
    if hit.unstable:
        fields["unstable"] = True
    return fields


@lru_cache(maxsize=4)
def identity_json(space: str) -> list[str]:
    """The opening of each reference arch's response item, by position: ``{"arch": ..., "index": ..., [nb201_index]``
    as JSON without its closing brace."""
    searched = get_space(space)
    strings = (
        arch_strings() if space == nb201.SPACE else [searched.to_string(a) for a in searched.reference_set() or ()]
    )
    nb201_index = space == nb201.SPACE
    return [
        f'{{"arch":{json.dumps(arch)},"index":{n}' + (f',"nb201_index":{n}' if nb201_index else "")
        for n, arch in enumerate(strings)
    ]


def _json_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


def _item_json(table: Table, identity: str, key: int, latency: float, std: float, none: str) -> str:
    if (hit := table.measured.get(key)) is not None:
        return identity + "," + json.dumps(measured_fields(hit), separators=(",", ":"))[1:]
    if table.predicted is None:
        return identity + none
    return f'{identity},"latency_ms":{_json_number(latency)},"std_ms":{_json_number(std)},"source":"predicted"}}'


_ALL_ITEMS: OrderedDict[Table, bytes] = OrderedDict()  # the items of a request for every arch in order, per table
_ALL_ITEMS_KEPT = 8
_all_items_lock = threading.Lock()


def encoded_items(table: Table, space: str, keys: list[int]) -> bytes:
    """The JSON array of ``PredictItem`` of ``keys`` (reference positions of ``space``) from ``table``, byte for byte
    what encoding the items would give; the array of every arch in order is encoded once per table."""
    size = len(table.latency_ms)
    every = len(keys) == size and keys == list(range(size))
    if every:
        with _all_items_lock:
            if (hit := _ALL_ITEMS.get(table)) is not None:
                _ALL_ITEMS.move_to_end(table)
                return hit
    identities = identity_json(space)
    none = f',"latency_ms":null,"std_ms":null,"source":null,"message":{json.dumps(table.reason)}}}'
    positions = np.asarray(keys, dtype=np.int64)
    latency, std = table.latency_ms[positions].tolist(), table.std_ms[positions].tolist()
    parts = [_item_json(table, identities[key], key, x, s, none) for key, x, s in zip(keys, latency, std, strict=True)]
    encoded = ("[" + ",".join(parts) + "]").encode()
    if every:
        with _all_items_lock:
            _ALL_ITEMS[table] = encoded
            while len(_ALL_ITEMS) > _ALL_ITEMS_KEPT:
                _ALL_ITEMS.popitem(last=False)
    return encoded
