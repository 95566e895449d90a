"""Secrets: API keys, enrollment tokens and agent credentials are random strings stored only as sha256."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal, get_args

Scope = Literal["client", "owner", "admin"]  # an API key's scopes; what each may do: ``api.auth.PERMISSIONS``
SCOPES: tuple[Scope, ...] = get_args(Scope)
KEY_NAME_BOUNDS = {"ge": 1, "le": 128}  # an API key name's length (the API's field and ``latfarm key create``)
# What an enrollment token's request may ask, by pydantic's bound names: a lifetime of at most a year (s) and at most
# 100,000 registrations (the API's fields and ``latfarm device enroll``'s options read them here).
ENROLLMENT_BOUNDS: dict[str, dict[str, int]] = {
    "expires_in_s": {"gt": 0, "le": 366 * 24 * 3600},
    "max_uses": {"ge": 1, "le": 100_000},
}
SECRET_BYTES = 24  # random bytes in each secret ``new_secret`` makes: 192 bits, beyond any guessing
# The shape of a ``new_secret``: ``lf_<kind>_`` then SECRET_BYTES in unpadded urlsafe base64.
GENERATED = re.compile(rf"lf_[a-z]+_[A-Za-z0-9_-]{{{4 * SECRET_BYTES // 3}}}")


def new_secret(prefix: str) -> str:
    """A fresh random secret such as ``lf_admin_...``; the prefix tells a reader what it is."""
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def generated_shape(secret: str) -> bool:
    """Whether ``secret`` has the shape of a ``new_secret`` (a custom ``LATFARM_ADMIN_KEY`` usually has not)."""
    return GENERATED.fullmatch(secret) is not None


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of a key or token: what the store keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_secret(header: str) -> str:
    """The secret of an ``Authorization: Bearer <secret>`` header value (REST keys, agent credentials); '' when
    the header or its secret is empty or the header has another scheme (``other_scheme``)."""
    scheme, _, secret = header.partition(" ")
    return "" if scheme.lower() != "bearer" else secret.strip()


def other_scheme(header: str) -> bool:
    """Whether a non-empty ``Authorization`` header value has another scheme than ``Bearer``."""
    return bool(header.strip()) and header.partition(" ")[0].lower() != "bearer"
