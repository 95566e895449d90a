"""search spaces

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00.000000

An arch row's index is its position in its space's reference set (NB201: the official index, as before), so the
column ``archs.nb201_index`` becomes ``archs.reference_index``; values are kept.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_archs_nb201_index", table_name="archs")
    op.execute("ALTER TABLE archs RENAME COLUMN nb201_index TO reference_index")  # PostgreSQL and SQLite >= 3.25
    op.create_index("ix_archs_reference_index", "archs", ["reference_index"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_archs_reference_index", table_name="archs")
    op.execute("ALTER TABLE archs RENAME COLUMN reference_index TO nb201_index")
    op.create_index("ix_archs_nb201_index", "archs", ["nb201_index"], unique=False)
