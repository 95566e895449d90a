"""Time: every stored time is UTC. Dependency-free, so the store's models can use it."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC time: SQLite hands back naive datetimes, and everything stored is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def iso_utc(moment: datetime | None) -> str | None:
    """``moment`` as the API writes every time: ISO 8601 in UTC with ``Z`` (``2026-11-30T21:16:29.556742Z``, as
    pydantic writes an aware UTC time)."""
    moment = as_utc(moment)
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
