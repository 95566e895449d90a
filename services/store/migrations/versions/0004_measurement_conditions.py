"""measurement conditions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00.000000

Devices get an input variant (resolution, classes; NB201 on CIFAR-10 for existing ones). Every measurement, job
batch and adaptation records the conditions it was measured or fitted under. Existing rows
keep their true conditions: agent rows were measured on the pruned NB201 graph at batch 1 in fp32 (the only export
there was); imported rows on the reference graph at their device's batch size and precision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PRECISIONS = ("fp32", "fp16", "int8")


def _conditions(batch_size: int, precision: str, graph: str) -> tuple[dict, str]:
    conditions = {
        "space": "nb201",
        "resolution": 32,
        "classes": 10,
        "batch_size": batch_size,
        "precision": precision,
        "graph": graph,
    }
    return conditions, f"nb201/32px/10cls/b{batch_size}/{precision}/{graph}"


def upgrade() -> None:
    op.add_column("devices", sa.Column("resolution", sa.Integer(), nullable=False, server_default=sa.text("32")))
    op.add_column("devices", sa.Column("classes", sa.Integer(), nullable=False, server_default=sa.text("10")))
    op.add_column("measurements", sa.Column("conditions", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.add_column(
        "measurements", sa.Column("conditions_key", sa.String(96), nullable=False, server_default=sa.text("''"))
    )
    op.create_index("ix_measurements_conditions_key", "measurements", ["conditions_key"])
    op.add_column("job_batches", sa.Column("conditions", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.add_column(
        "adaptations", sa.Column("conditions_key", sa.String(96), nullable=False, server_default=sa.text("''"))
    )

    measurements = sa.table(
        "measurements",
        sa.column("device_id", sa.Integer),
        sa.column("dataset", sa.String),
        sa.column("conditions", sa.JSON),
        sa.column("conditions_key", sa.String),
    )
    batches = sa.table("job_batches", sa.column("conditions", sa.JSON))
    adaptations = sa.table("adaptations", sa.column("device_id", sa.Integer), sa.column("conditions_key", sa.String))
    devices = sa.table(
        "devices", sa.column("id", sa.Integer), sa.column("batch_size", sa.Integer), sa.column("precision", sa.String)
    )
    bind = op.get_bind()

    agent, agent_key = _conditions(1, "fp32", "pruned")
    bind.execute(
        measurements.update().where(measurements.c.dataset.is_(None)).values(conditions=agent, conditions_key=agent_key)
    )
    bind.execute(batches.update().values(conditions=agent))
    for device_id, batch_size, precision in bind.execute(
        sa.select(devices.c.id, devices.c.batch_size, devices.c.precision)
    ):
        imported, imported_key = _conditions(
            batch_size or 1, precision if precision in PRECISIONS else "fp32", "reference"
        )
        bind.execute(
            measurements.update()
            .where(measurements.c.device_id == device_id, measurements.c.dataset.is_not(None))
            .values(conditions=imported, conditions_key=imported_key)
        )
        measured_by_agents = bind.execute(
            sa.select(sa.func.count())
            .select_from(measurements)
            .where(measurements.c.device_id == device_id, measurements.c.dataset.is_(None))
        ).scalar_one()
        bind.execute(
            adaptations.update()
            .where(adaptations.c.device_id == device_id)
            .values(conditions_key=agent_key if measured_by_agents else imported_key)
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("classes")
        batch_op.drop_column("resolution")
    with op.batch_alter_table("adaptations") as batch_op:
        batch_op.drop_column("conditions_key")
    with op.batch_alter_table("job_batches") as batch_op:
        batch_op.drop_column("conditions")
    op.drop_index("ix_measurements_conditions_key", "measurements")
    with op.batch_alter_table("measurements") as batch_op:
        batch_op.drop_column("conditions_key")
        batch_op.drop_column("conditions")
