"""Claim marks for one-time keys (SQLite claims move a mark instead of deleting rows).

A claim for many devices deleted one row and one unique-index entry of each device: a page
per device in each B-tree, all written to the WAL at commit (a 200-device claim spent 9-10 ms
in SQLite). It now records, per device and algorithm, the `id` up to which keys were handed
out: a few pages of a small table. The rows below the mark are deleted at the device's next
upload or by housekeeping.

Revision ID: 0009_one_time_key_claims
Revises: 0008_one_time_key_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_one_time_key_claims"
down_revision = "0008_one_time_key_index"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "one_time_key_claims",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("algorithm", sa.Text, primary_key=True),
        sa.Column("claimed_to", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            ondelete="CASCADE",
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    # Keys below a mark were handed out: delete them before the marks go.
    op.execute(
        "DELETE FROM one_time_keys WHERE id <= (SELECT c.claimed_to FROM one_time_key_claims "
        "AS c WHERE c.user_id = one_time_keys.user_id AND c.device_id = one_time_keys.device_id "
        "AND c.algorithm = one_time_keys.algorithm)"
    )
    op.drop_table("one_time_key_claims")
