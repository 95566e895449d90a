"""The FastAPI application: routers, auth, error shape, body limit, metrics, shared state on ``app.state``."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latfarm.services.admin import mount_admin
from latfarm.services.core.config import Settings
from latfarm.services.domain.predictions import PredictionService, load_default_predictor
from latfarm.services.infra.cache import make_cache
from latfarm.services.infra.prometheus import Metrics, MetricsMiddleware
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker
from latfarm.services.store.migrate import upgrade

from .auth import ensure_admin_key
from .routes import adapt, devices, health, jobs, keys, measurements, predict

MAX_BODY_BYTES = 4 * 1024 * 1024  # 15,625 arch strings take about 1.3 MB


def error(status: int, message: str, **extra) -> JSONResponse:
    """The one error shape: ``{"detail": message, "message": message, ...}``."""
    return JSONResponse({"detail": message, "message": message, **extra}, status_code=status)


def _field(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")] or list(loc[-1:])
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error(422, message, errors=errors)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    response = error(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


class BodyLimit:
    """413 for request bodies over ``limit`` bytes, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(send)
            return
        received, started = 0, False

        class TooLarge(Exception):
            pass

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        message = f"request body over {self.limit // (1024 * 1024)} MB"
        body = json.dumps({"detail": message, "message": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings) -> FastAPI:
    """The REST app on ``settings``' database (schema upgraded). Shared objects live on ``app.state``:
    ``settings``, ``sessions``, ``read_sessions``, ``notifier``, ``cache``, ``predictions``, ``metrics``, and
    ``new_admin_key`` (the bootstrap admin key when it was generated just now, to print once; else None)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions, read_sessions = make_sessionmaker(engine), make_read_sessionmaker(engine)
    notifier = make_notifier(settings.redis_url)
    cache = make_cache(settings.redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        notifier.close()
        cache.close()
        engine.dispose()

    app = FastAPI(
        title="latfarm",
        version="1",
        summary="On-device latency measurements and latency prediction for hardware-aware NAS.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.read_sessions = read_sessions
    app.state.notifier = notifier
    app.state.cache = cache
    app.state.predictions = PredictionService(sessions, cache, load_default_predictor)
    app.state.metrics = Metrics(read_sessions, settings.heartbeat_interval_s)
    app.state.new_admin_key = ensure_admin_key(sessions, settings.admin_key)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (health, devices, jobs, measurements, predict, adapt, keys):
        app.include_router(module.router)
    mount_admin(app, sessions, settings)
    app.add_middleware(BodyLimit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
