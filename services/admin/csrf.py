"""CSRF protection of the admin UI: a random token per login session, required on every state-changing request.

Requests that change data are POST or DELETE (sqladmin's action links and logout are turned into POST routes by
``post_only``); one made with the session cookie must carry the session's token as the ``X-CSRF-Token`` header or
the ``csrf_token`` form field (``static/csrf.js`` adds it; the page has it in ``<meta name="csrf-token">``). A
request authenticated by ``Authorization: Bearer`` carries no cookie a browser could forge and is not checked.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

SESSION_KEY = "csrf"
HEADER = "x-csrf-token"
FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def ensure_token(request: Request) -> str:
    """The session's CSRF token, created when the session has none."""
    if SESSION_KEY not in request.session:
        request.session[SESSION_KEY] = secrets.token_urlsafe(32)
    return request.session[SESSION_KEY]


async def token_ok(request: Request) -> bool:
    """Whether a request may proceed: a safe method, or the session's token in the header or the form."""
    if request.method in SAFE_METHODS:
        return True
    expected = request.session.get(SESSION_KEY)
    sent = request.headers.get(HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(FORMS):
        sent = str((await request.form()).get(FIELD) or "")
    return bool(expected and sent) and hmac.compare_digest(str(sent), str(expected))


def refused() -> Response:
    """The 403 answer to a state-changing request without the session's token."""
    return PlainTextResponse("missing or wrong CSRF token: reload the page and try again", status_code=403)


def post_only(routes: list[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with sqladmin's data-changing GET routes (custom actions, logout) answering POST only."""
    return [
        Route(r.path, r.endpoint, methods=["POST"], name=r.name)
        if isinstance(r, Route) and (r.name == "logout" or r.name.startswith("action-"))
        else r
        for r in routes
    ]
