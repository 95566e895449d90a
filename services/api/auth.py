"""API keys: ``Authorization: Bearer <key>``, scopes, and the bootstrap admin key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count

from fastapi import Request
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from latfarm.services.core.errors import Conflict, FailedPrecondition, NotFound, PermissionDenied, Unauthenticated
from latfarm.services.core.security import bearer_secret, hash_secret, new_secret, other_scheme
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.infra.ttl_cache import TtlCache
from latfarm.services.store.db import transaction
from latfarm.services.store.models import ApiKey, Device

# What each scope may do. ``admin`` may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "client": frozenset({"read", "predict", "jobs"}),
    "owner": frozenset({"read", "devices", "jobs"}),
    "admin": frozenset({"read", "predict", "jobs", "devices", "keys", "admin"}),
}
# Scopes whose permissions on a device hold only for the devices the key owns (``Device.owner_key_id``).
OWN_DEVICES_ONLY = frozenset({"owner"})
BOOTSTRAP_NAME = "bootstrap-admin"
log = logging.getLogger(__name__)
KEY_TTL_S = 5.0  # a valid key is trusted this long without reading the database; revoking forgets it at once here


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name and scopes."""

    key_id: int
    name: str
    scopes: frozenset[str]

    def can(self, permission: str) -> bool:
        """Whether one of the principal's scopes grants ``permission``."""
        return any(permission in PERMISSIONS.get(scope, ()) for scope in self.scopes)

    def can_on(self, permission: str, device: Device) -> bool:
        """Whether a scope grants ``permission`` on ``device``: an owner scope only on the key's own devices."""
        return any(
            permission in PERMISSIONS.get(scope, ())
            and (scope not in OWN_DEVICES_ONLY or device.owner_key_id == self.key_id)
            for scope in self.scopes
        )

    def check_device(self, permission: str, device: Device) -> None:
        """``PermissionDenied`` naming the device unless the principal may use ``permission`` on it."""
        if not self.can_on(permission, device):
            raise PermissionDenied(
                f"this key does not own device {device.name!r}: only its owner or an admin may do this"
            )


class PrincipalCache(TtlCache[str, Principal]):
    """Key hash -> ``Principal`` for ``KEY_TTL_S`` (one per app: ``app.state.principals``); a key revoked through
    this process is forgotten at once, through another replica within ``KEY_TTL_S``."""

    def __init__(self) -> None:
        """An empty cache."""
        super().__init__(KEY_TTL_S)

    def forget_key(self, key_id: int) -> None:
        """Drop key ``key_id`` (revoked)."""
        self.forget(lambda principal: principal.key_id == key_id)


def authenticate(request: Request) -> Principal:
    """The principal of a request's bearer key (401 when missing, unknown or revoked; 429 instead when its client
    failed too often, see ``infra.throttle``)."""
    digest, client = _credential(request)
    principals: PrincipalCache = request.app.state.principals
    return principals.get(digest) or _stored_principal(request, digest, client)


def cached_principal(state: State, authorization: str, client: str) -> Principal | None:
    """The principal ``require`` would find for a request with this ``Authorization`` header from ``client``
    without reading the database, counting or refusing anything: a well-formed bearer key known for
    ``KEY_TTL_S`` that the throttle lets be verified (``AuthGuard.verifies``); None otherwise (``require`` then
    decides)."""
    key = bearer_secret(authorization)
    return state.principals.get(hash_secret(key)) if key and state.auth_guard.verifies(client, key) else None


def _credential(request: Request) -> tuple[str, str]:
    """(hash of the request's bearer key, client address), once the header is well formed and the throttle lets
    the key be verified (429 otherwise)."""
    header = request.headers.get("authorization", "")
    if other_scheme(header):
        raise Unauthenticated(
            "the Authorization header does not start with 'Bearer ': send 'Authorization: Bearer <key>'"
        )
    if not (key := bearer_secret(header)):
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    guard: AuthGuard = request.app.state.auth_guard
    client = request.client.host if request.client else "unknown"
    guard.check("rest", client, key)
    return hash_secret(key), client


def _stored_principal(request: Request, digest: str, client: str) -> Principal:
    """The principal of the key hashed ``digest`` as the database has it (then cached); 401 when unknown or
    revoked, counted against ``client`` (429 instead when it failed too often)."""
    with request.app.state.read_sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
    if row is None or row.revoked:
        request.app.state.auth_guard.failed("rest", client)
        raise Unauthenticated("invalid or revoked API key")
    principal = Principal(row.id, row.name, frozenset(row.scopes or ()))
    request.app.state.principals.put(digest, principal)
    return principal


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates and checks one permission (403 naming it when missing). It runs on the
    event loop: a key known for ``KEY_TTL_S`` needs no thread, the database is read in the thread pool."""

    async def dependency(request: Request) -> Principal:
        digest, client = _credential(request)
        principal = request.app.state.principals.get(digest)
        if principal is None:
            principal = await run_in_threadpool(_stored_principal, request, digest, client)
        if not principal.can(permission):
            allowed = sorted(s for s, perms in PERMISSIONS.items() if permission in perms)
            raise PermissionDenied(f"this key lacks permission {permission!r}; it needs scope {' or '.join(allowed)}")
        return principal

    dependency.__name__ = f"require_{permission}"
    return dependency


def create_key(session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key row (hash only) and the secret itself, shown to its owner once; ``Conflict`` when an unrevoked
    key has that name (the audit log names actors by key name), also when another transaction took it after the
    check (``uq_api_keys_active_name``; ``session`` must then be rolled back)."""
    taken = Conflict(f"name: an unrevoked key is called {name!r}: pick another name", field="name")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked.is_(False)).limit(1)):
        raise taken
    prefix = "lf_admin" if "admin" in scopes else f"lf_{scopes[0]}"
    secret = new_secret(prefix)
    row = ApiKey(name=name, key_hash=hash_secret(secret), scopes=sorted(set(scopes)))
    session.add(row)
    try:
        session.flush()
    except IntegrityError as err:  # the name's unique index (a secret's hash is never repeated)
        raise taken from err
    return row, secret


def revoke(session: Session, key_id: int) -> None:
    """Revoke key ``key_id`` in ``session`` (the caller commits): ``NotFound`` when unknown, ``FailedPrecondition``
    when it is the last admin key. The unrevoked keys stay locked until the commit, so two admins revoking each
    other's keys at once cannot leave none."""
    active = session.scalars(select(ApiKey).where(ApiKey.revoked.is_(False)).with_for_update()).all()
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"unknown key id {key_id}")
    if row in active and "admin" in (row.scopes or ()) and sum("admin" in (k.scopes or ()) for k in active) == 1:
        raise FailedPrecondition(
            f"key {key_id} is the last admin key: create another admin key before revoking it", field="key_id"
        )
    row.revoked = True


def ensure_admin_key(sessions: sessionmaker[Session], admin_key: str | None) -> str | None:
    """Make sure an admin can log in; returns a newly generated key (to print once), else None.

    With ``admin_key`` (``LATFARM_ADMIN_KEY``) that key is registered if it is not yet; a revoked one stays revoked
    (a compromised key never comes back), with a warning saying how to set a new one. Without it, a key is
    generated only when no admin key exists.
    """
    try:
        return _ensure_admin_key(sessions, admin_key)
    except (IntegrityError, Conflict):  # replicas starting together registered the same key or name: one is there
        return _ensure_admin_key(sessions, admin_key)


def key_revoked(sessions: sessionmaker[Session], key: str) -> bool:
    """Whether ``key`` is a stored key that was revoked (False when unknown or the schema is not there yet)."""
    with sessions() as session:
        if not inspect(session.connection()).has_table(ApiKey.__tablename__):
            return False
        return bool(session.scalar(select(ApiKey.revoked).where(ApiKey.key_hash == hash_secret(key))))


def _ensure_admin_key(sessions: sessionmaker[Session], admin_key: str | None) -> str | None:
    with transaction(sessions) as session:
        if admin_key:
            digest = hash_secret(admin_key)
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
            if row is None:
                session.add(ApiKey(name=_unused_name(session, BOOTSTRAP_NAME), key_hash=digest, scopes=["admin"]))
            elif row.revoked:
                log.warning(
                    "LATFARM_ADMIN_KEY is key %d (%s), which was revoked: it stays revoked; log in with another "
                    "admin key, or set LATFARM_ADMIN_KEY to a new secret and restart",
                    row.id,
                    row.name,
                )
            elif "admin" not in row.scopes:
                row.scopes = sorted({*row.scopes, "admin"})
            return None
        keys = session.scalars(select(ApiKey).where(ApiKey.revoked.is_(False))).all()
        if any("admin" in (k.scopes or ()) for k in keys):
            return None
        _, secret = create_key(session, _unused_name(session, BOOTSTRAP_NAME), ["admin"])
        return secret


def _unused_name(session: Session, name: str) -> str:
    """``name``, else ``name-2``, ``name-3`` ...: the first no unrevoked key has (the audit log names keys)."""
    taken = set(session.scalars(select(ApiKey.name).where(ApiKey.revoked.is_(False))))
    return next(candidate for n in count(1) if (candidate := name if n == 1 else f"{name}-{n}") not in taken)
