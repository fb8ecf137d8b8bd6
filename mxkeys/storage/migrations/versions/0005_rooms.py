"""Rooms, events, current state, memberships, transaction IDs, server signing keys.

Revision ID: 0005_rooms
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_rooms"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.Text, primary_key=True),
        sa.Column("room_version", sa.Text, nullable=False),
        sa.Column("creator", sa.Text, nullable=False),
        sa.Column("is_public", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("stream_ordering", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("state_key", sa.Text, nullable=True),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("depth", sa.BigInteger, nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger, nullable=False),
        sa.Column("json", sa.Text, nullable=False),
        sa.Column("replaces_state", sa.Text, nullable=True),
        sa.Column("redacted_by", sa.Text, nullable=True),
        sa.Column("txn_device_id", sa.Text, nullable=True),
        sa.Column("txn_id", sa.Text, nullable=True),
    )
    op.create_index("events_room_order", "events", ["room_id", "stream_ordering"])
    op.create_table(
        "current_state",
        sa.Column("room_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, primary_key=True),
        sa.Column("state_key", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("room_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("membership", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("stream_ordering", sa.BigInteger, nullable=False),
        sa.Column("forgotten", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("memberships_user", "memberships", ["user_id", "membership"])
    op.create_table(
        "event_txns",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("txn_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "server_signing_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("seed", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("server_signing_keys", "event_txns", "memberships", "current_state",
                  "events", "rooms"):
        op.drop_table(table)
