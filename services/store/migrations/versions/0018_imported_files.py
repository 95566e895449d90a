"""single-device files imported are recorded in a table of their own

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 20:10:00.000000

A LatBench or CSV file belongs to the device it was imported as (``datasets.rows.claim_file``). The rule read the
rows' ``provenance['sha256']`` (a scan of every measurement, growing with the table) and a file that added no row
left no trace. ``imported_files`` records each file imported as a device, looked up by its (sha256, device) index.
The upgrade fills it from the imported rows that name a file: one record per digest and device, from the earliest
such row (its file name, dataset as the format, arch's space, time). The downgrade drops the table; the rows keep
their provenance.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    files = op.create_table(
        "imported_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256", "device_id", name="uq_imported_files_sha256_device"),
    )
    rows = sa.table(
        "measurements",
        sa.column("id", sa.Integer),
        sa.column("device_id", sa.Integer),
        sa.column("arch_id", sa.Integer),
        sa.column("source", sa.String),
        sa.column("dataset", sa.String),
        sa.column("provenance", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    archs = sa.table("archs", sa.column("id", sa.Integer), sa.column("space", sa.String))
    sha256 = rows.c.provenance["sha256"].as_string()
    first = (
        sa.select(sa.func.min(rows.c.id).label("id"))
        .where(rows.c.source == "imported", sha256.is_not(None))
        .group_by(sha256, rows.c.device_id)
        .subquery()
    )
    earliest = (
        sa.select(
            sha256,
            rows.c.device_id,
            rows.c.dataset,
            archs.c.space,
            rows.c.provenance["file"].as_string(),
            rows.c.created_at,
        )
        .join(first, first.c.id == rows.c.id)
        .join(archs, archs.c.id == rows.c.arch_id)
    )
    columns = ["sha256", "device_id", "format", "space", "file", "imported_at"]
    op.execute(sa.insert(files).from_select(columns, earliest))


def downgrade() -> None:
    op.drop_table("imported_files")
