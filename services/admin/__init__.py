"""The admin web UI at ``/admin``: sqladmin tables, a dashboard with plots, per-device pages; admin key required."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin
from sqladmin.authentication import login_required
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from latfarm.services.admin import csrf, dashboard
from latfarm.services.admin.auth import AdminKeyAuth
from latfarm.services.admin.views import MAX_WHOLE, model_views, whole
from latfarm.services.api.errors import http_status
from latfarm.services.core.config import Settings
from latfarm.services.core.errors import LatfarmError, NotFound
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.store.db import DATABASE_DOWN, UNAVAILABLE_MESSAGE
from latfarm.services.store.models import Device

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
BASE_URL = "/admin"


class LatfarmAdmin(Admin):
    """sqladmin with the dashboard as its index, a page per device and JSON data for the plots."""

    def __init__(self, app: FastAPI, sessions: sessionmaker[Session], settings: Settings, guard: AuthGuard) -> None:
        # sqladmin reconfigures the sessionmaker it gets (autoflush off): give it its own.
        super().__init__(
            app,
            session_maker=sessionmaker(**sessions.kw),
            base_url=BASE_URL,
            title="latfarm admin",
            templates_dir=str(HERE / "templates"),
            authentication_backend=AdminKeyAuth(sessions, settings.admin_key, guard, cookie_path=BASE_URL),
        )
        self.host_app = app
        self.sessions = sessions
        self.heartbeat_interval_s = settings.heartbeat_interval_s
        api: dict[str, Callable[[Request], Any]] = {
            "fleet": self._fleet,
            "distribution": self._distribution,
            "histogram": self._histogram,
            "scatter": self._scatter,
            "arch": self._arch,
        }
        self.admin.router.routes[:0] = [
            Mount("/assets", app=StaticFiles(directory=HERE / "static"), name="assets"),
            Route("/device-overview/{device_id:int}", self.device_overview, name="device_overview"),
            *(Route(f"/api/{name}", self._json_endpoint(compute), name=f"api_{name}") for name, compute in api.items()),
        ]
        for view in model_views(settings.heartbeat_interval_s):
            self.add_view(view)
        self.admin.router.routes = csrf.post_only(self.admin.router.routes)
        for error_class in DATABASE_DOWN:
            self.admin.add_exception_handler(error_class, _database_down)

    @property
    def predictions(self) -> Any:
        """The app's PredictionService, when it has one."""
        return getattr(self.host_app.state, "predictions", None)

    def _query(self, compute: Callable[[Session], Any]) -> Any:
        with self.sessions() as session:
            return compute(session)

    @staticmethod
    def _device(session: Session, request: Request) -> Device:
        raw = request.query_params.get("device", "")
        device_id = whole(raw)
        device = session.get(Device, device_id) if device_id is not None else None
        if device is None:
            raise NotFound(f"unknown device id {raw!r}", field="device")
        return device

    def _fleet(self, request: Request) -> Any:
        return self._query(lambda s: dashboard.fleet(s, self.heartbeat_interval_s))

    def _distribution(self, request: Request) -> Any:
        return self._query(dashboard.distributions)

    def _histogram(self, request: Request) -> Any:
        return self._query(lambda s: dashboard.histogram(s, self._device(s, request)))

    def _scatter(self, request: Request) -> Any:
        space = request.query_params.get("space")
        return self._query(
            lambda s: dashboard.measured_vs_predicted(s, self.predictions, self._device(s, request), space)
        )

    def _arch(self, request: Request) -> Any:
        params = request.query_params
        return self._query(lambda s: dashboard.arch_across_devices(s, params.get("arch"), params.get("space")))

    def _json_endpoint(self, compute: Callable[[Request], Any]) -> Callable[[Request], Any]:
        admin = self

        @login_required
        async def endpoint(_view: Any, request: Request) -> Response:
            try:
                return JSONResponse(await run_in_threadpool(compute, request))
            except LatfarmError as err:
                return JSONResponse({"error": err.message, "code": err.code}, status_code=http_status(err))

        async def route(request: Request) -> Response:
            return await endpoint(admin, request)

        return route

    @login_required
    async def index(self, request: Request) -> Response:
        """The dashboard: fleet totals and a row per device."""

        def compute(session: Session) -> dict[str, Any]:
            return {
                "fleet": dashboard.fleet(session, self.heartbeat_interval_s),
                "devices": dashboard.device_table(session),
            }

        context = await run_in_threadpool(self._query, compute)
        return await self.templates.TemplateResponse(request, "dashboard.html", {**context, "title": "Dashboard"})

    @login_required
    async def delete(self, request: Request) -> Response:
        """sqladmin's bulk delete, all selected rows or none: every id in ``pks`` is looked up before any row is
        deleted (sqladmin deletes row by row and stops at the first bad id); an unknown or junk id is a 404."""
        await self._delete(request)  # sqladmin's permission check: 403 first
        view = self._find_model_view(request.path_params["identity"])
        for pk in filter(None, request.query_params.get("pks", "").split(",")):
            if await view.get_object_for_delete(pk) is None:
                raise HTTPException(404, f"no {view.name.lower()} with id {pk!r}: nothing deleted")
        return await super().delete(request)

    @login_required
    async def device_overview(self, request: Request) -> Response:
        """A device's page: its owner, measurement counts and predictor status; 404 when the device id is unknown."""
        device_id = request.path_params["device_id"]

        def compute(session: Session) -> dict[str, Any] | None:
            device = session.get(Device, device_id) if device_id <= MAX_WHOLE else None
            if device is None:
                return None
            counts = next((d for d in dashboard.device_table(session) if d["id"] == device_id), {})
            return {
                "device": device,
                "counts": counts,
                "owner": dashboard.owner_text(session, device),
                "predictors": dashboard.predictor_status(session, self.predictions, device),
            }

        context = await run_in_threadpool(self._query, compute)
        if context is None:
            raise HTTPException(404, f"unknown device id {device_id}")
        title = f"Device {context['device'].name}"
        return await self.templates.TemplateResponse(request, "device.html", {**context, "title": title})


async def _database_down(_request: Request, exc: Exception) -> Response:
    """A page the database cannot serve: 503 and retry later, like the API; the driver's message stays in the log."""
    log.warning("database unavailable: %s", exc)
    return PlainTextResponse(UNAVAILABLE_MESSAGE, status_code=503)


def mount_admin(app: FastAPI, sessions: sessionmaker[Session], settings: Settings, guard: AuthGuard) -> None:
    """Serve the admin UI at ``/admin`` on ``app``; login with an admin API key, failures throttled by ``guard``."""
    LatfarmAdmin(app, sessions, settings, guard)
