"""jobs keep their place in their batch's request

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:00:00.000000

A job's ``position`` is its arch's place among the distinct archs of its ``POST /v1/jobs`` request; a batch's items
are listed in that order. Jobs from before it have none (their batch lists them as before: by creation, then id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("position", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("position")
