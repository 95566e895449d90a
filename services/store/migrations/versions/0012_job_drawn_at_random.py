"""a job records whether its arch was drawn at random

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00.000000

``drawn_at_random``: the job's arch was drawn uniformly at random (``latfarm measure --random``, an adaptation's
calibrating archs), not chosen by a search; only such archs (and imported ones) calibrate an adaptation's spread
(split conformal needs calibrating archs exchangeable with the unmeasured ones). Of the jobs from before it, those of
an adaptation's batch that are not among its samples were its random calibrating archs (0011); the rest were chosen.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("drawn_at_random", sa.Boolean(), nullable=False, server_default=sa.false()))
    adaptations = sa.table(
        "adaptations",
        sa.column("batch_id", sa.String),
        sa.column("calibration", sa.Integer),
        sa.column("sample_archs", sa.JSON),
    )
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("batch_id", sa.String),
        sa.column("arch_id", sa.Integer),
        sa.column("drawn_at_random", sa.Boolean),
    )
    archs = sa.table(
        "archs", sa.column("id", sa.Integer), sa.column("arch", sa.String), sa.column("reference_index", sa.Integer)
    )
    conn = op.get_bind()
    calibrated = conn.execute(
        sa.select(adaptations.c.batch_id, adaptations.c.sample_archs).where(
            adaptations.c.calibration > 0, adaptations.c.batch_id.is_not(None)
        )
    ).all()
    for batch_id, samples in calibrated:  # samples: reference positions or arch strings
        rows = conn.execute(
            sa.select(jobs.c.id, archs.c.arch, archs.c.reference_index)
            .join(archs, archs.c.id == jobs.c.arch_id)
            .where(jobs.c.batch_id == batch_id)
        )
        extras = [job for job, arch, position in rows if arch not in samples and position not in samples]
        if extras:
            conn.execute(sa.update(jobs).where(jobs.c.id.in_(extras)).values(drawn_at_random=True))


def downgrade() -> None:
    op.drop_column("jobs", "drawn_at_random")  # in place: a copy of jobs would null its measurements' job_id on SQLite
