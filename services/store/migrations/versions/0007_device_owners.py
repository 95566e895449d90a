"""device owners and enrollment use limits

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30 14:00:00.000000

Devices get an owning API key; existing devices get none, so only admins act on them until an admin sets one.
Enrollment tokens get an optional limit on their uses.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
FK_NAME = "fk_devices_owner_key_id_api_keys"


def upgrade() -> None:
    # added in place, never by a table copy: dropping the old devices table would cascade to every row using it
    if op.get_bind().dialect.name == "sqlite":  # SQLite adds a column's foreign key only inline
        op.execute("ALTER TABLE devices ADD COLUMN owner_key_id INTEGER REFERENCES api_keys (id)")
    else:
        op.add_column("devices", sa.Column("owner_key_id", sa.Integer(), nullable=True))
        op.create_foreign_key(FK_NAME, "devices", "api_keys", ["owner_key_id"], ["id"])
    op.create_index("ix_devices_owner_key_id", "devices", ["owner_key_id"])
    op.add_column("enrollments", sa.Column("max_uses", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch_op:
        batch_op.drop_column("max_uses")
    op.drop_index("ix_devices_owner_key_id", "devices")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(FK_NAME, "devices", type_="foreignkey")
    op.drop_column("devices", "owner_key_id")
