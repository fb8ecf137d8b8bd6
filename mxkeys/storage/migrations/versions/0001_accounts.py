"""Accounts: users, devices, access tokens and user-interactive-auth sessions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ts", sa.BigInteger, nullable=True),
        sa.Column("last_seen_ip", sa.Text, nullable=True),
        sa.Column("last_seen_user_agent", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("user_id", "device_id"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ts", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("access_tokens_device", "access_tokens", ["user_id", "device_id"])
    op.create_table(
        "uia_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("completed", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("uia_sessions_created", "uia_sessions", ["created_ts"])


def downgrade() -> None:
    op.drop_table("uia_sessions")
    op.drop_table("access_tokens")
    op.drop_table("devices")
    op.drop_table("users")
