"""Liveness (``/healthz``, open) and Prometheus metrics (``/metrics``, as ``LATFARM_METRICS_ACCESS`` says)."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from latfarm.services.core.errors import PermissionDenied
from latfarm.services.infra.prometheus import CONTENT_TYPE
from latfarm.services.store.db import ping

from ..auth import authenticate
from ..schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database is unreachable."}},
)
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, 503 otherwise; ``redis`` says whether Redis is configured and reachable
    (``degraded`` without it: agents then wake at their poll timeout and predictions are not shared);
    ``grpc_port`` is the agents' port."""
    redis, grpc_port = request.app.state.cache.health(), request.app.state.grpc_port
    try:
        ping(request.app.state.engine)
    except Exception as err:  # noqa: BLE001
        body = {"status": "error", "database": f"unreachable: {type(err).__name__}", "redis": redis}
        return JSONResponse({**body, "grpc_port": grpc_port}, status_code=503)
    status = "degraded" if redis.startswith("unreachable") else "ok"
    return JSONResponse({"status": status, "database": "ok", "redis": redis, "grpc_port": grpc_port})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format."}
    },
)
def metrics(request: Request) -> Response:
    """The Prometheus exposition of the server's metrics; who may read it is ``LATFARM_METRICS_ACCESS``: ``key``
    (any valid API key as Bearer token), ``local`` (clients on this machine) or ``open``."""
    access = request.app.state.settings.metrics_access
    if access == "key":
        authenticate(request)
    elif access == "local" and not _loopback(request):
        raise PermissionDenied("/metrics answers clients on the server's own machine only (LATFARM_METRICS_ACCESS)")
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an IP address (the test client calls itself "testclient")
        return False
