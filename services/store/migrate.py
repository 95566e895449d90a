"""Bring a database to the current schema."""

from __future__ import annotations

from services.store.db import make_engine
from services.store.models import Base


def upgrade(url: str) -> None:
    """Create or migrate the schema at ``url`` (idempotent)."""
    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
