"""Admin login: an unrevoked API key with the ``admin`` scope (``LATFARM_ADMIN_KEY`` is one), kept as its hash in a
signed cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqladmin.authentication import AuthenticationBackend
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from latfarm.services.admin import csrf
from latfarm.services.core.errors import Throttled
from latfarm.services.core.security import bearer_secret, hash_secret
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.store.models import ApiKey

SESSION_COOKIE = "latfarm_admin"
SESSION_MAX_AGE_S = 12 * 3600


def session_secret(admin_key: str | None) -> str:
    """Cookie-signing secret: derived from the configured admin key (stable across processes), else random."""
    if admin_key:
        return hmac.new(admin_key.encode(), b"latfarm-admin-session", hashlib.sha256).hexdigest()
    return secrets.token_urlsafe(32)


class AdminKeyAuth(AuthenticationBackend):
    """sqladmin authentication by admin API key: a login form, or ``Authorization: Bearer <key>`` for scripts."""

    def __init__(
        self, sessions: sessionmaker[Session], admin_key: str | None, guard: AuthGuard, cookie_path: str = "/admin"
    ) -> None:
        """Check keys in ``sessions`` and against ``admin_key``; ``guard`` throttles clients that guess keys."""
        super().__init__(
            secret_key=session_secret(admin_key),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_S,
            path=cookie_path,
            same_site="lax",
        )
        self.sessions = sessions
        self.guard = guard
        self.admin_key_hash = hash_secret(admin_key) if admin_key else None

    def key_name(self, key_hash: str) -> str | None:
        """Name of the admin key with this hash (``LATFARM_ADMIN_KEY`` for that one), or None when unknown, revoked
        or not an admin key: the database decides, so a revoked ``LATFARM_ADMIN_KEY`` is refused too."""
        with self.sessions() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()
        if row is None or row.revoked or "admin" not in (row.scopes or ()):
            return None
        if self.admin_key_hash and hmac.compare_digest(key_hash, self.admin_key_hash):
            return "LATFARM_ADMIN_KEY"
        return row.name

    async def login(self, request: Request) -> bool | Response:
        """Start a session from the login form's admin key; False (back to the form) when it is not one, 429 instead
        when the client failed too often (``infra.throttle``)."""
        form = await request.form()
        key = str(form.get("key") or "").strip()
        if not key:
            return False
        name = await self._checked(request, key)
        if not isinstance(name, str):
            return name or False
        request.session.clear()
        request.session.update({"key_hash": hash_secret(key), "user_id": name})
        csrf.ensure_token(request)
        return True

    async def logout(self, request: Request) -> bool | Response:
        """End the session (a POST with the CSRF token, else 403); False sends the user back to the login page."""
        if not await csrf.token_ok(request):
            return csrf.refused()
        request.session.clear()
        return False  # back to the login page

    async def authenticate(self, request: Request) -> bool | Response:
        """Checked on every request, so a revoked key ends its sessions at once; a session's state-changing request
        without its CSRF token gets 403."""
        if bearer := bearer_secret(request.headers.get("authorization", "")):
            name = await self._checked(request, bearer)
            return name if isinstance(name, Response) else name is not None
        key_hash = request.session.get("key_hash")  # signed by the server: a stale one is no guess
        if not key_hash or await run_in_threadpool(self.key_name, key_hash) is None:
            return False
        if not await csrf.token_ok(request):
            return csrf.refused()
        csrf.ensure_token(request)
        return True

    async def _checked(self, request: Request, key: str) -> str | Response | None:
        """The name of admin key ``key``, None (a failure, counted) or a 429 answer when the throttle refuses it."""
        client = request.client.host if request.client else "unknown"
        try:
            self.guard.check("admin", client, key)
            name = await run_in_threadpool(self.key_name, hash_secret(key))
            if name is None:
                self.guard.failed("admin", client)
        except Throttled as err:
            return PlainTextResponse(err.message, status_code=429, headers={"Retry-After": str(err.retry_after_s)})
        return name
