"""job batch measurement protocol

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_batches", sa.Column("protocol", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("job_batches") as batch_op:
        batch_op.drop_column("protocol")
