"""indexes of the rows an agent's delete clears: jobs by holder, measurements by agent

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 16:00:00.000000

Deleting an agent sets ``jobs.lease_owner`` and ``measurements.agent_id`` to NULL (ON DELETE SET NULL), which
PostgreSQL does with ``WHERE $1 = lease_owner`` and ``WHERE $1 = agent_id``: ``ix_jobs_held`` (the jobs on lease
only) cannot serve the first and nothing served the second, so each read the whole table (docs/fleet.md, "No waits
on others' jobs"). ``ix_jobs_holder`` holds every job an agent held, by holder and then lease, so it also serves
``queue.release_all`` and replaces ``ix_jobs_held``; ``ix_measurements_agent`` holds the agents' measurements
(imported rows have no agent).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

HELD = sa.text("lease_owner IS NOT NULL")
LEASED = sa.text("lease_expires_at IS NOT NULL")
MEASURED_BY_AGENT = sa.text("agent_id IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_holder", "jobs", ["lease_owner", "lease_expires_at"], postgresql_where=HELD, sqlite_where=HELD
    )
    op.drop_index("ix_jobs_held", table_name="jobs")
    op.create_index(
        "ix_measurements_agent",
        "measurements",
        ["agent_id"],
        postgresql_where=MEASURED_BY_AGENT,
        sqlite_where=MEASURED_BY_AGENT,
    )


def downgrade() -> None:
    op.drop_index("ix_measurements_agent", table_name="measurements")
    op.create_index("ix_jobs_held", "jobs", ["lease_owner"], postgresql_where=LEASED, sqlite_where=LEASED)
    op.drop_index("ix_jobs_holder", table_name="jobs")
