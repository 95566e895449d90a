"""The FastAPI application: routers, auth, error handlers, body limit, metrics, the runtime's objects on app.state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latfarm.services.core import errors as core_errors
from latfarm.services.infra.prometheus import MetricsMiddleware

from .auth import PrincipalCache
from .docs import install_docs
from .errors import ERROR_RESPONSES, error, error_body, http_status, install_error_handlers
from .lane import PredictLane
from .routes import adapt, devices, health, jobs, keys, measurements, predict, rank

if TYPE_CHECKING:
    from latfarm.services.runtime import Runtime

MAX_BODY_BYTES = 4 * 1024 * 1024  # 15,625 arch strings take about 1.3 MB
# The docs list tags in this order, whatever order the routers are matched in.
OPENAPI_TAGS = [
    {"name": "health", "description": "Liveness and Prometheus metrics."},
    {"name": "devices", "description": "Devices, their agents and enrollment."},
    {"name": "jobs", "description": "Measurement jobs on a device's agents."},
    {"name": "measurements", "description": "Stored latencies: query, import, export, review."},
    {"name": "predict", "description": "Latency of any arch: measured, else predicted; rankings; adaptation."},
    {"name": "keys", "description": "API keys and their scopes."},
]


class _TooLarge(Exception):
    """A request body passed ``BodyLimit``'s limit while streaming."""


class BodyLimit:
    """413 for request bodies over ``limit`` bytes, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 when its body exceeds the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(send)
            return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        err = core_errors.TooLarge(f"request body over {self.limit // (1024 * 1024)} MB")
        response = error(http_status(err), err.message, **error_body(err))
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app(runtime: Runtime, grpc_port: int | None = None) -> FastAPI:
    """The REST app on ``runtime`` (bootstrapped by its owner, who also closes it). The shared objects the routes
    use live on ``app.state``: ``settings``, ``engine``, ``sessions``, ``read_sessions``, ``notifier``, ``cache``,
    ``predictions``, ``predict_pool``, ``metrics``, ``auth_guard``, ``grpc_port`` (the agents' port, as bound:
    ``grpc_port``, else the setting's), and the app's own ``principals`` (who a key is, for a few seconds)."""
    from latfarm.services.admin import mount_admin  # the admin imports api.errors: imported here, not at the top

    app = FastAPI(
        title="latfarm",
        version="1",
        summary="On-device latency measurements and latency prediction for hardware-aware NAS.",
        docs_url=None,  # install_docs serves /docs and /redoc from local assets
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # no OpenTelemetry: skip its per-request checks
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.settings = runtime.settings
    app.state.engine = runtime.engine
    app.state.sessions = runtime.sessions
    app.state.read_sessions = runtime.read_sessions
    app.state.notifier = runtime.notifier
    app.state.cache = runtime.cache
    app.state.health = runtime.health
    app.state.predictions = runtime.predictions
    app.state.predict_pool = runtime.predict_pool
    app.state.metrics = runtime.metrics
    app.state.auth_guard = runtime.auth_guard
    app.state.grpc_port = runtime.settings.grpc_port if grpc_port is None else grpc_port
    app.state.principals = PrincipalCache()

    install_error_handlers(app)
    install_docs(app)
    for module in (health, predict, rank, devices, jobs, measurements, adapt, keys):  # matched in order: busiest first
        app.include_router(module.router, responses=ERROR_RESPONSES)
    mount_admin(app, runtime.sessions, runtime.settings, runtime.auth_guard)
    app.add_middleware(PredictLane, state=app.state)  # inside the body limit and the metrics, like the routes
    app.add_middleware(BodyLimit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
