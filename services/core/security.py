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
