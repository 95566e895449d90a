"""no two unrevoked API keys share a name

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 17:15:00.000000

The audit log names actors by key name. ``POST /v1/keys`` refused a name an unrevoked key has only by reading
first, so two requests at once could both get it; ``uq_api_keys_active_name`` (a unique index of the unrevoked
keys' names) makes the database refuse the second. A database from before it may hold unrevoked namesakes: the
first of them (lowest id) keeps its name and each later one is renamed ``<name>-2``, ``<name>-3`` ..., the first
such name no unrevoked key has (as the server names a new bootstrap admin key), cut to fit 128 characters.
Revoked keys keep their names. The downgrade drops the index and keeps the new names.
"""

from __future__ import annotations

from itertools import count

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ACTIVE_KEY = sa.text("NOT revoked")
NAME_LENGTH = 128  # api_keys.name is VARCHAR(128)
KEYS = sa.table("api_keys", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("revoked", sa.Boolean))


def upgrade() -> None:
    conn = op.get_bind()
    active = conn.execute(sa.select(KEYS.c.id, KEYS.c.name).where(sa.not_(KEYS.c.revoked)).order_by(KEYS.c.id)).all()
    taken = {name for _, name in active}
    seen: set[str] = set()
    for key_id, name in active:
        if name in seen:
            renamed = next(c for n in count(2) if (c := _numbered(name, n)) not in taken)
            taken.add(renamed)
            conn.execute(sa.update(KEYS).where(KEYS.c.id == key_id).values(name=renamed))
        seen.add(name)
    op.create_index(
        "uq_api_keys_active_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=ACTIVE_KEY,
        sqlite_where=ACTIVE_KEY,
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_active_name", table_name="api_keys")


def _numbered(name: str, n: int) -> str:
    """``name-n``, ``name`` cut so the whole fits ``NAME_LENGTH``."""
    suffix = f"-{n}"
    return name[: NAME_LENGTH - len(suffix)] + suffix
