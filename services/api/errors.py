"""The REST error shape and the one mapping of errors onto HTTP statuses.

Every error answer is ``{"detail": message, "message": message, "code"?: ..., "field"?: ...}``. Routes raise
``LatfarmError`` subclasses (or let the domain's through) and never pick a status for them; ``HTTP_STATUS`` does.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from latfarm.predictor import nb201, spaces
from latfarm.services.core.errors import ErrorCode, InvalidArgument, LatfarmError, Unavailable
from latfarm.services.store.db import DATABASE_DOWN, UNAVAILABLE_MESSAGE

log = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorCode, int] = {
    "invalid_argument": 422,
    "unauthenticated": 401,
    "permission_denied": 403,
    "resource_exhausted": 413,
    "not_found": 404,
    "already_exists": 409,
    "failed_precondition": 409,
    "unimplemented": 501,
    "unavailable": 503,
    "internal": 500,
}


def error(status: int, message: str, **extra) -> JSONResponse:
    """The one error shape: ``{"detail": message, "message": message, ...}``."""
    return JSONResponse({"detail": message, "message": message, **extra}, status_code=status)


def error_body(err: LatfarmError) -> dict:
    """``code`` and, when the error names one, ``field``: what an error answer carries beside its message."""
    return {"code": err.code} | ({"field": err.field} if err.field else {})


def http_status(err: LatfarmError) -> int:
    """The HTTP status of ``err`` by its code (500 for a code outside the closed set)."""
    return HTTP_STATUS.get(err.code, 500)  # type: ignore[call-overload]


def _field(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")] or list(loc[-1:])
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error(422, message, code="invalid_argument", errors=errors)


async def _latfarm_error(_: Request, exc: LatfarmError) -> JSONResponse:
    response = error(http_status(exc), exc.message, **error_body(exc))
    if exc.code == "unauthenticated":
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _arch_error(request: Request, exc: ValueError) -> JSONResponse:
    """The predictor cannot import services: its ``ArchError`` and ``UnknownSpace`` are mapped here, as invalid
    arguments."""
    return await _latfarm_error(request, InvalidArgument(str(exc)))


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    response = error(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return await _latfarm_error(request, Unavailable(UNAVAILABLE_MESSAGE))


def install_error_handlers(app: FastAPI) -> None:
    """Answer request validation failures, ``LatfarmError``, ``ArchError`` and ``HTTPException`` in the one shape."""
    # registered through the decorator: add_exception_handler's typing takes only handlers of Exception itself
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(LatfarmError)(_latfarm_error)
    for arch_error in (nb201.ArchError, spaces.ArchError, spaces.UnknownSpace):
        app.exception_handler(arch_error)(_arch_error)
    app.exception_handler(HTTPException)(_http_error)
    for error_class in DATABASE_DOWN:
        app.exception_handler(error_class)(_database_down)
