"""one imported row per device, arch, dataset and conditions

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 17:30:00.000000

``uq_measurements_dataset`` held one imported row per (device, arch, dataset): a dataset could not hold an arch's
figures under two conditions (a CSV export of a device measured at batch 1 and 4 could not be imported back under one
dataset name). The import rule (``datasets.rows.add_rows``: one figure per device, arch and conditions, whatever
brings it) is the one that matters; the constraint backs it up and now includes the conditions. No row changes.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

NAME = "uq_measurements_dataset"


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch_op:
        batch_op.drop_constraint(NAME, type_="unique")
        batch_op.create_unique_constraint(NAME, ["device_id", "arch_id", "dataset", "conditions_key"])


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch_op:
        batch_op.drop_constraint(NAME, type_="unique")
        batch_op.create_unique_constraint(NAME, ["device_id", "arch_id", "dataset"])
