"""The API's front pages without a CDN: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from the assets in
``static/`` (see its README for versions and licences), and ``/``, which points people to them."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = "/api-assets"  # the mount point of STATIC_DIR; the admin UI's own assets live under /admin/assets
LINKS = {
    "docs": "/docs",
    "redoc": "/redoc",
    "openapi": "/openapi.json",
    "admin": "/admin/",
    "healthz": "/healthz",
    "metrics": "/metrics",
}


def install_docs(app: FastAPI) -> None:
    """Serve ``/``, ``/docs``, ``/redoc`` and their assets on ``app``, which must be created with
    ``docs_url=None, redoc_url=None`` (FastAPI's own pages load their scripts from a CDN)."""
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="api-assets")
    title, openapi_url = app.title, app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, object]:
        """Where to go from here: the API docs, the admin UI, health and metrics."""
        return {"service": title, "links": LINKS}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """Swagger UI on the OpenAPI schema, every asset local."""
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        """ReDoc on the OpenAPI schema, every asset local (no Google fonts)."""
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon-32x32.png",
            with_google_fonts=False,
        )
