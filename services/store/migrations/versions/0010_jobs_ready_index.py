"""an index of the jobs a lease may take: queued, model exported

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:30:00.000000

A lease picks a device's oldest queued jobs whose model is exported. Its condition on the artifact made PostgreSQL
plan by statistics taken before the exports (no job exported: about one row expected): it read every queued job of
the device and sorted them, per lease. ``ix_jobs_ready`` holds exactly the jobs a lease may take, in lease order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

READY = sa.text("state = 'queued' AND artifact_sha256 IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_ready", "jobs", ["device_id", "created_at", "id"], postgresql_where=READY, sqlite_where=READY
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_ready", table_name="jobs")
