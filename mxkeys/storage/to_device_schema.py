"""Tables of to-device messaging (sharing `schema.metadata`)."""

from __future__ import annotations

import sqlalchemy as sa

from mxkeys.storage.schema import metadata

# The last position handed out on streams whose rows get deleted (so MAX() would go back).
stream_positions = sa.Table(
    "stream_positions",
    metadata,
    sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)

# Messages waiting for a device, until it syncs past them.
device_inbox = sa.Table(
    "device_inbox",
    metadata,
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
    sa.Index("device_inbox_device", "user_id", "device_id", "stream_id"),
)

# Transaction IDs of /sendToDevice, so a retried request is not delivered twice.
to_device_txns = sa.Table(
    "to_device_txns",
    metadata,
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
