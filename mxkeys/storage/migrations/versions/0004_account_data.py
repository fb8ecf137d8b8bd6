"""Account data (with its stream counter), filters, profiles and push rules.

Revision ID: 0004_account_data
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_account_data"
down_revision = "0001"
branch_labels = None
depends_on = None


def _user_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "account_data",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("stream_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "room_id", "type"),
        _user_fk(),
    )
    op.create_index("account_data_user_stream", "account_data", ["user_id", "stream_id"])
    stream = op.create_table(
        "account_data_stream",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(stream, [{"id": 1, "position": 0}])
    op.create_table(
        "filters",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("filter_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("filter_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "filter_id"),
        _user_fk(),
    )
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "field"),
        _user_fk(),
    )
    op.create_table(
        "push_rules",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        _user_fk(),
    )


def downgrade() -> None:
    op.drop_table("push_rules")
    op.drop_table("profiles")
    op.drop_table("filters")
    op.drop_table("account_data_stream")
    op.drop_index("account_data_user_stream", table_name="account_data")
    op.drop_table("account_data")
