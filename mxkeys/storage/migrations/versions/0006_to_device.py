"""To-device messaging: stream positions, device inboxes, transaction IDs.

Revision ID: 0006_to_device
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_to_device"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_positions",
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "device_inbox",
        sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("device_inbox_device", "device_inbox", ["user_id", "device_id", "stream_id"])
    op.create_table(
        "to_device_txns",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("txn_id", sa.Text, primary_key=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("to_device_txns")
    op.drop_table("device_inbox")
    op.drop_table("stream_positions")
