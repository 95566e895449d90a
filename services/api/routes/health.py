"""Liveness (``/healthz``) and Prometheus metrics (``/metrics``); neither needs a key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from latfarm.services.infra.prometheus import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, 503 otherwise."""
    try:
        with request.app.state.read_sessions() as session:
            session.execute(text("select 1"))
    except Exception as err:  # noqa: BLE001
        return JSONResponse({"status": "error", "database": f"unreachable: {type(err).__name__}"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """The Prometheus exposition of the server's metrics."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
