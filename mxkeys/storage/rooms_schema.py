"""Tables of rooms and their events (kept apart from `schema.py` for readability; both
share `schema.metadata`)."""

from __future__ import annotations

import sqlalchemy as sa

from mxkeys.storage.schema import metadata

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("room_version", sa.Text, nullable=False),
    sa.Column("creator", sa.Text, nullable=False),
    sa.Column("is_public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
)

# Every event of every room, in the order this server accepted them (`stream_ordering`, the
# events stream). `json` is the event in federation format, without `event_id` (room versions
# 4+ derive it from the content); after a redaction it holds the redacted form.
events = sa.Table(
    "events",
    metadata,
    sa.Column("stream_ordering", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("state_key", sa.Text, nullable=True),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("depth", sa.BigInteger, nullable=False),
    sa.Column("origin_server_ts", sa.BigInteger, nullable=False),
    sa.Column("json", sa.Text, nullable=False),
    # The state event this one replaced (for `unsigned.replaces_state` and state rewinds).
    sa.Column("replaces_state", sa.Text, nullable=True),
    sa.Column("redacted_by", sa.Text, nullable=True),
    # The sending device's transaction ID, echoed to that device only.
    sa.Column("txn_device_id", sa.Text, nullable=True),
    sa.Column("txn_id", sa.Text, nullable=True),
    sa.Index("events_room_order", "room_id", "stream_ordering"),
)

current_state = sa.Table(
    "current_state",
    metadata,
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("state_key", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
)

# Each user's current membership of each room (a projection of current_state).
memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("membership", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("stream_ordering", sa.BigInteger, nullable=False),
    sa.Column("forgotten", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("memberships_user", "user_id", "membership"),
)

# Transaction IDs of /send, /state-less redactions etc.: a retry returns the same event.
event_txns = sa.Table(
    "event_txns",
    metadata,
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

# The server's own signing keys (shared by every worker through the database).
server_signing_keys = sa.Table(
    "server_signing_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("seed", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
)
