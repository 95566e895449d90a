"""a batch records the id of the API key that submitted it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 21:40:00.000000

Key names are not unique, so ``requested_by`` (a name, for people) cannot say who may cancel a batch:
``requested_by_key_id`` does. Batches from before it have none: only their device's owner or an admin cancel them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_batches", sa.Column("requested_by_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_batches") as batch_op:
        batch_op.drop_column("requested_by_key_id")
