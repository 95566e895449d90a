"""measurement headline latency

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("measurements", sa.Column("latency_ms", sa.Float(), nullable=True))
    op.execute("UPDATE measurements SET latency_ms = median_ms")
    with op.batch_alter_table("measurements") as batch_op:
        batch_op.alter_column("latency_ms", existing_type=sa.Float(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch_op:
        batch_op.drop_column("latency_ms")
