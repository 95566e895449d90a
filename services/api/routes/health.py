"""Liveness (``/healthz``, open) and Prometheus metrics (``/metrics``, as ``LATFARM_METRICS_ACCESS`` says)."""

from __future__ import annotations

import asyncio
import ipaddress

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from latfarm.services.core.errors import PermissionDenied
from latfarm.services.infra.health import STALE_S
from latfarm.services.infra.prometheus import CONTENT_TYPE

from ..auth import authenticate
from ..schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database is unreachable."}},
)
async def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, 503 otherwise; ``redis`` says whether Redis is configured and reachable
    (``degraded`` without it: agents then wake at their poll timeout and predictions are not shared); ``grpc_port``
    is the agents' port and ``grpc_tls`` whether it serves TLS. Answered on the event loop from the runtime's
    ``HealthProbe``: its last ping, at most 2 s old."""
    probe = request.app.state.health
    health = probe.latest()
    if health is None:  # no fresh ping: wait for the next
        try:
            health = await asyncio.wait_for(asyncio.wrap_future(probe.next()), STALE_S)
        except TimeoutError:
            health = probe.no_answer()
    body = {"status": health.status, "database": health.database, "redis": health.redis}
    body["grpc_port"] = request.app.state.grpc_port
    body["grpc_tls"] = request.app.state.settings.grpc_tls
    return JSONResponse(body, status_code=503 if health.status == "error" else 200)


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
