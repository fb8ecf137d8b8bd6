"""Server-side key backups: backup versions and the room keys stored in them.

Revision ID: 0002_room_keys
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_room_keys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_key_versions",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("algorithm", sa.Text, nullable=False),
        sa.Column("auth_data", sa.Text, nullable=False),
        sa.Column("etag", sa.BigInteger, nullable=False),
        sa.Column("key_count", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("user_id", "version"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "room_keys",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("session_id", sa.Text, nullable=False),
        sa.Column("first_message_index", sa.BigInteger, nullable=False),
        sa.Column("forwarded_count", sa.BigInteger, nullable=False),
        sa.Column("is_verified", sa.Boolean, nullable=False),
        sa.Column("session_data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "version", "room_id", "session_id"),
        sa.ForeignKeyConstraint(
            ["user_id", "version"],
            ["room_key_versions.user_id", "room_key_versions.version"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("room_keys")
    op.drop_table("room_key_versions")
