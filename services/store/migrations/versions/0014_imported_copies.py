"""imported rows that repeat a figure the device already had are removed

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 16:00:00.000000

Imports skip an arch the device already has a row of under the same conditions (``datasets.rows.add_rows``). Before
that rule, an import under another dataset name (a LatBench export of the device imported back, HELP and
HW-NAS-Bench both holding a device) added a second row. Of those, the copies go: an imported row whose device, arch
and conditions have an earlier row (an agent's or an import's) with the same figure (``latency_ms`` within
``SAME``, what an export's seconds lose on the way back). No figure is lost, and no agent row is touched. A copy
stays where the earlier row is quarantined and the copy is not (the copy is then the arch's only usable figure), and
so does an imported row whose figure differs (another release of the data: which is right is not the migration's
call). The downgrade keeps the rows as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SAME = 1e-9  # relative: a figure exported as seconds and imported back as ms is off by a few ulps at most


def upgrade() -> None:
    rows = sa.table(
        "measurements",
        sa.column("id", sa.Integer),
        sa.column("device_id", sa.Integer),
        sa.column("arch_id", sa.Integer),
        sa.column("conditions_key", sa.String),
        sa.column("source", sa.String),
        sa.column("latency_ms", sa.Float),
        sa.column("quarantined", sa.Boolean),
    )
    earlier = rows.alias("earlier")
    repeated = (
        sa.select(sa.literal(1))
        .select_from(earlier)
        .where(
            earlier.c.device_id == rows.c.device_id,
            earlier.c.arch_id == rows.c.arch_id,
            earlier.c.conditions_key == rows.c.conditions_key,
            earlier.c.id < rows.c.id,
            sa.func.abs(earlier.c.latency_ms - rows.c.latency_ms) <= SAME * rows.c.latency_ms,
            sa.or_(earlier.c.quarantined.is_(False), rows.c.quarantined.is_(True)),
        )
        .correlate(rows)
        .exists()
    )
    op.execute(sa.delete(rows).where(rows.c.source == "imported", repeated))


def downgrade() -> None:
    """The removed copies repeated figures still stored: nothing to put back."""
