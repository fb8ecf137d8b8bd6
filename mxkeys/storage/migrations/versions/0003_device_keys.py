"""Device keys, one-time and fallback keys, cross-signing keys and signatures, and the
device-list change stream.

Revision ID: 0003_device_keys
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_device_keys"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); BIGINT elsewhere.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _device_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id", "device_id"],
        ["devices.user_id", "devices.device_id"],
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "device_keys",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("key_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id"),
        _device_fk(),
    )
    op.create_table(
        "one_time_keys",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("algorithm", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("key_json", sa.Text, nullable=False),
        _device_fk(),
        sa.UniqueConstraint(
            "user_id", "device_id", "algorithm", "key_id", name="one_time_keys_key"
        ),
    )
    op.create_index(
        "one_time_keys_claim", "one_time_keys", ["user_id", "device_id", "algorithm", "id"]
    )
    op.create_table(
        "fallback_keys",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("algorithm", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("key_json", sa.Text, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("user_id", "device_id", "algorithm"),
        _device_fk(),
    )
    op.create_table(
        "cross_signing_keys",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("usage", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("key_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "usage"),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "cross_signing_signatures",
        sa.Column("target_user_id", sa.Text, nullable=False),
        sa.Column("target_key_id", sa.Text, nullable=False),
        sa.Column("signer_user_id", sa.Text, nullable=False),
        sa.Column("signing_key_id", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(
            "target_user_id", "target_key_id", "signer_user_id", "signing_key_id"
        ),
        sa.ForeignKeyConstraint(["target_user_id"], ["users.user_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "device_list_changes",
        sa.Column("stream_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("device_id", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("device_list_changes_user", "device_list_changes", ["user_id", "stream_id"])


def downgrade() -> None:
    op.drop_table("device_list_changes")
    op.drop_table("cross_signing_signatures")
    op.drop_table("cross_signing_keys")
    op.drop_table("fallback_keys")
    op.drop_table("one_time_keys")
    op.drop_table("device_keys")
