"""The current schema, as SQLAlchemy Core tables that the queries are written against.

Changes to these tables go with an Alembic revision in `migrations/versions/`; the test suite
checks that the migrated database matches this metadata.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("device_id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=True),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ts", sa.BigInteger, nullable=True),
    sa.Column("last_seen_ip", sa.Text, nullable=True),
    sa.Column("last_seen_user_agent", sa.Text, nullable=True),
)

# Tokens are stored as SHA-256 digests: a leaked database does not leak usable tokens.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
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
    sa.Index("access_tokens_device", "user_id", "device_id"),
)

uia_sessions = sa.Table(
    "uia_sessions",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    # The user the session authenticates, or NULL for registration.
    sa.Column("user_id", sa.Text, nullable=True),
    # The request the session was started for; a session cannot be moved to another one.
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    # JSON list of the stage types completed so far.
    sa.Column("completed", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Index("uia_sessions_created", "created_ts"),
)
