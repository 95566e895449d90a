"""an index of the jobs on lease, by holder

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00.000000

An agent process that starts hands back the jobs its earlier process held (``queue.release_all``): without an index
on ``lease_owner`` that read every running job of the fleet, once per agent start. Finished jobs keep their last
holder (the admin's job list shows who measured or failed one), so ``ix_jobs_held`` holds the jobs on lease only
(``lease_expires_at`` set: running); its condition is not the state's, which a state index could serve.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LEASED = sa.text("lease_expires_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_jobs_held", "jobs", ["lease_owner"], postgresql_where=LEASED, sqlite_where=LEASED)


def downgrade() -> None:
    op.drop_index("ix_jobs_held", table_name="jobs")
