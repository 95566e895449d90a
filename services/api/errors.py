"""The REST error shape and the one mapping of errors onto HTTP statuses.

Every error answer is ``{"detail": message, "message": message, "code": ..., "field"?: ...}`` (a request that
fails validation: ``field`` is the first invalid field and ``errors`` lists them all). Routes raise
``LatfarmError`` subclasses (or let the domain's through) and never pick a status for them; ``HTTP_STATUS`` does.
"""

from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from latfarm.common.ranges import not_of_kind
from latfarm.predictor import nb201, spaces
from latfarm.services.core import names
from latfarm.services.core.errors import ErrorCode, InvalidArgument, LatfarmError, Throttled, Unavailable
from latfarm.services.store.db import DATABASE_DOWN, UNAVAILABLE_MESSAGE

from .bounds import length_message, range_message
from .schemas import ARCH_QUERY_PATTERN, ErrorOut

log = logging.getLogger(__name__)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")  # an OpenAPI path item's keys

# The error answers every route documents (FastAPI's own 422 schema is replaced by the one shape).
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "The body is not valid JSON."),
        (401, "No API key, or an unknown or revoked one."),
        (403, "The key's scopes do not allow this."),
        (404, "A named resource does not exist."),
        (409, "The system's state does not allow this (yet)."),
        (413, "The request body is too large."),
        (422, "A field is invalid; the message names it."),
        (429, "This client failed authentication too often; retry after Retry-After seconds."),
        (503, "The database cannot serve; retry later."),
    )
}

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


# The code of an answer the framework gives itself (an unrouted path, a method its path lacks, an unhandled error):
# HTTP_STATUS read backwards (409: failed_precondition), a method not offered as unimplemented; any other 4xx is
# invalid_argument, any other 5xx internal.
STATUS_CODES: dict[int, ErrorCode] = {status: code for code, status in HTTP_STATUS.items() if code != "already_exists"}
STATUS_CODES[405] = "unimplemented"


def status_code(status: int) -> ErrorCode:
    """The error code of an answer with HTTP ``status`` that no ``LatfarmError`` gave (``STATUS_CODES``)."""
    return STATUS_CODES.get(status, "internal" if status >= 500 else "invalid_argument")


def error(status: int, message: str, **extra) -> JSONResponse:
    """The one error shape: ``{"detail": message, "message": message, ...}``."""
    return JSONResponse({"detail": message, "message": message, **extra}, status_code=status)


def error_body(err: LatfarmError) -> dict:
    """``code`` and, when the error names one, ``field``: what an error answer carries beside its message."""
    return {"code": err.code} | ({"field": err.field} if err.field else {})


def http_status(err: LatfarmError) -> int:
    """The HTTP status of ``err`` by its code (500 for a code outside the closed set; 429 when throttled)."""
    if isinstance(err, Throttled):
        return 429
    return HTTP_STATUS.get(err.code, 500)  # type: ignore[call-overload]


def _line_column(text: str, position: object) -> str:
    """`` at line L column C`` (1-based) of character ``position`` in ``text``; '' when it is not a position."""
    if not isinstance(position, int):
        return ""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)  # rfind is -1 on the first line
    return f" at line {line} column {column}"


# A pydantic error location's part that names a union member tried (``str``, ``function-before[...]``,
# ``list[int]``), not a field: the public path stops before it.
UNION_MEMBER = re.compile(r"^(str|int|float|bool|list|dict|tuple|none)$|[\[(-]")
# What each union member tried is, for the message of a value that matched none.
MEMBER_KINDS = (("str", "a string"), ("int", "a whole number"), ("list", "a list of whole numbers"))
# A field missing or not the request's, in words (pydantic: "Field required", "Extra inputs are not permitted").
PRESENCE = {"missing": "required", "extra_forbidden": "not a field of this request (its fields: /docs)"}
ONE_OF = re.compile(r"^\^\(([\w|]+)\)\$$")  # a pattern that is a choice: ^(a|b|c)$


def _path(parts: list) -> str:
    """``archs[0].name``: a request's field by its public path."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _located(error: dict) -> tuple[str, list[str]]:
    """A validation error's public field path and, when the value matched no member of a union, the members tried
    (by their pydantic tags); a model validator's ``LatfarmError`` names its own field."""
    parts = [p for p in error["loc"] if p not in ("body", "query", "path", "header")]
    member = next((i for i, p in enumerate(parts) if isinstance(p, str) and UNION_MEMBER.search(p)), None)
    members = [] if member is None else [parts[member]]
    parts = parts if member is None else parts[:member]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, LatfarmError) and cause.field:
        parts = [*parts, cause.field]
    return _path(parts) or ("body" if "body" in error["loc"] else _path(list(error["loc"][-1:]))), members


def _input(error: dict) -> str:
    """The value a validation error refused, shortened: a string quoted as every other message quotes one
    (``'xyz'``), anything else as the client sent it (JSON: ``true``, ``null``, ``[1, "a"]``)."""
    value = error.get("input")
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _field_errors(request: Request, errors: list[dict]) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per invalid field of ``request``, in order: a value no member of a union takes is
    one error naming the forms it may have, not one per member tried."""
    out: list[dict[str, str]] = []
    unions: dict[str, tuple[dict[str, str], list[str]]] = {}  # field -> (its item in out, the members tried)
    for e in errors:
        field, members = _located(e)
        if not members:
            out.append({"field": field, "message": _message(request, e)})
            continue
        if field not in unions:
            unions[field] = ({"field": field, "message": f"got {_input(e)}"}, [])
            out.append(unions[field][0])
        unions[field][1].extend(members)
    for item, members in unions.values():
        kinds = [kind for name, kind in MEMBER_KINDS if any(_is_kind(tag, name) for tag in members)]
        forms = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else "".join(kinds) or "of another form"
        item["message"] = f"must be {forms}, {item['message']}"
    return out


def _is_kind(tag: str, name: str) -> bool:
    """Whether union member ``tag`` takes values of kind ``name`` (the API's whole numbers are ``int`` members
    behind the ``_whole_number`` check)."""
    return tag.startswith(name) or (name == "int" and "whole_number" in tag and not tag.startswith("list"))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid field by its public path (``errors``; ``field``: the first, as a route's own error
    names its field); 400 when the body is not JSON at all (its decode error and where)."""
    invalid_json = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
    if invalid_json is not None:
        where = _line_column((await request.body()).decode(errors="replace"), invalid_json["loc"][-1])
        message = f"request body is not valid JSON: {invalid_json.get('ctx', {}).get('error', 'decode error')}{where}"
        return error(400, message, code="invalid_argument", field="body")
    errors = _field_errors(request, list(exc.errors()))
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error(422, message, code="invalid_argument", field=errors[0]["field"], errors=errors)


def named_once(message: str, field: str) -> str:
    """A domain rule's ``message`` without the ``field`` it opens with (``precision: ...``, ``precision must be
    ...``), for an error that names its field itself."""
    for opening in (f"{field}: ", f"{field} "):
        if message.startswith(opening):
            return message[len(opening) :]
    return message


def _message(request: Request, error: dict) -> str:
    """A validation error's message, reworded where pydantic's would not tell a client what to do: a body that
    arrived as raw bytes (it was not sent as JSON), a number out of bounds (its whole range), a value against a
    pattern (never the pattern itself: a device name against the name rule, an arch, a choice), a value of another
    kind (``must be a whole number, got 'abc'``, as the command line says it), a string or list of a length outside
    its bounds (``its length must be between 1 and 128, got 300``), a missing or unknown field, a value outside a
    fixed set (``must be one of min, median, got 'mean'``, as the command line says it) and a validator's
    own error (without pydantic's prefix)."""
    if tuple(error["loc"]) == ("body",) and isinstance(error.get("input"), bytes):
        return "send the body as JSON, with the header 'Content-Type: application/json'"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, LatfarmError):  # its field is the error's: named once
        return named_once(cause.message, cause.field or str(error["loc"][-1]))
    got = _input(error).strip("'") if isinstance(error.get("input"), str) else _input(error)  # a query's number
    if (out_of_range := range_message(request, error, got)) is not None:
        return out_of_range
    if (too_long := length_message(request, error)) is not None:
        return too_long
    if (wrong_kind := not_of_kind(error["type"], _input(error))) is not None:
        return wrong_kind
    if error["type"] in PRESENCE:
        return PRESENCE[error["type"]]
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if error["type"] in ("literal_error", "enum"):  # pydantic lists the choices quoted: "'min' or 'median'"
        known = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"must be one of {', '.join(known)}, got {_input(error)}"
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern")
        if pattern == names.NAME_PATTERN:
            return names.refusal(error.get("input"))
        if pattern == ARCH_QUERY_PATTERN:
            return f"{_input(error)} is no arch string of a registered space and no reference position"
        if choice := ONE_OF.match(pattern or ""):
            return f"must be one of {', '.join(choice.group(1).split('|'))}, got {_input(error)}"
        return f"{_input(error)} is not of the form this field takes (see its description in /docs)"
    return error["msg"]


async def _latfarm_error(_: Request, exc: LatfarmError) -> JSONResponse:
    response = error(http_status(exc), exc.message, **error_body(exc))
    if exc.code == "unauthenticated":
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, Throttled):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def _arch_error(request: Request, exc: ValueError) -> JSONResponse:
    """The predictor cannot import services: its ``ArchError`` and ``UnknownSpace`` are mapped here, as invalid
    arguments."""
    if isinstance(exc, spaces.UnknownSpace):  # a space only a request names: its ``space`` field
        return await _latfarm_error(request, InvalidArgument(f"space: {exc}", field="space"))
    return await _latfarm_error(request, InvalidArgument(str(exc)))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """The framework's own refusals in the one shape: 404 for a path no route serves (``field``: ``path``, which
    tells it from a route's 404 for a resource), 405 for a method its path lacks."""
    unrouted = {"field": "path"} if exc.status_code == 404 and "route" not in request.scope else {}
    response = error(exc.status_code, str(exc.detail), code=status_code(exc.status_code), **unrouted)
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods the API documents for the request's path (its OpenAPI path item)."""
    for template, item in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            return sorted(method.upper() for method in item if method in METHODS)
    return []


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return await _latfarm_error(request, Unavailable(UNAVAILABLE_MESSAGE))


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    """A bug: 500 in the one shape, never its message (the server's log has the traceback)."""
    return error(500, "internal error; the server's log has the details", code="internal")


def install_error_handlers(app: FastAPI) -> None:
    """Answer request validation failures, ``LatfarmError``, ``ArchError``, ``HTTPException`` and any other
    exception (500) in the one shape."""
    # registered through the decorator: add_exception_handler's typing takes only handlers of Exception itself
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(LatfarmError)(_latfarm_error)
    for arch_error in (nb201.ArchError, spaces.ArchError, spaces.UnknownSpace):
        app.exception_handler(arch_error)(_arch_error)
    app.exception_handler(HTTPException)(_http_error)
    for error_class in DATABASE_DOWN:
        app.exception_handler(error_class)(_database_down)
    app.exception_handler(Exception)(_unhandled)
