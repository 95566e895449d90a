"""an adaptation records how many random archs it measures to calibrate its spread

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00.000000

``calibration``: R random archs measured and fitted with the K samples, whose leave-one-out errors set the spread factor
(``predictor.calibration``). Adaptations from before it measured none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("adaptations", sa.Column("calibration", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("adaptations") as batch_op:
        batch_op.drop_column("calibration")
