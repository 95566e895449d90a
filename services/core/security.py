"""Secrets: API keys, enrollment tokens and agent credentials are random strings stored only as sha256."""

from __future__ import annotations

import hashlib
import secrets


def new_secret(prefix: str) -> str:
    """A fresh random secret such as ``lf_admin_...``; the prefix tells a reader what it is."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


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
