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

# -- Server-side key backups (key_backup.yaml) ------------------------------------------------
# A user's backup versions are integers allocated from 1 and never reused: a deleted version
# keeps its row (deleted = true, its keys gone) so deleting it again succeeds. The current
# version is the newest one not deleted. `etag` counts the changes to the version's keys and
# `key_count` is the exact number of its rows in `room_keys`; both change in the transaction
# that changes the keys.
room_key_versions = sa.Table(
    "room_key_versions",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("algorithm", sa.Text, nullable=False),
    # JSON object text, as validated and re-encoded on upload.
    sa.Column("auth_data", sa.Text, nullable=False),
    sa.Column("etag", sa.BigInteger, nullable=False),
    sa.Column("key_count", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
)

room_keys = sa.Table(
    "room_keys",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("first_message_index", sa.BigInteger, nullable=False),
    sa.Column("forwarded_count", sa.BigInteger, nullable=False),
    sa.Column("is_verified", sa.Boolean, nullable=False),
    # The session_data JSON object as text, streamed back verbatim on download.
    sa.Column("session_data", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id", "version"],
        ["room_key_versions.user_id", "room_key_versions.version"],
        ondelete="CASCADE",
    ),
)

# -- Device keys, one-time/fallback keys, cross-signing (keys.yaml, cross_signing.yaml) -------
# Key objects are stored as JSON object text (sorted keys, compact), as uploaded.
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); BIGINT elsewhere.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

device_keys = sa.Table(
    "device_keys",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("device_id", sa.Text, primary_key=True),
    # The uploaded `device_keys` object without `unsigned` (the server adds that on query).
    sa.Column("key_json", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id", "device_id"],
        ["devices.user_id", "devices.device_id"],
        ondelete="CASCADE",
    ),
)

# One-time keys; `id` orders them by upload (claims hand out the oldest first, MSC4225). On
# PostgreSQL a claim deletes the row; on SQLite it moves the device's claim mark (below) past it.
# The layout is a trade between uploads and claims. On SQLite a rowid table is appended to in
# upload order, which keeps uploads cheap; a claim then finds a device's oldest key by reading
# that device's entries in the unique index. Measured alternatives (2026-12-07, store level,
# 200-device claims that still deleted, and 64 concurrent uploads of 50 keys; claim marks then
# took a 200-device claim from 9-10 ms of SQLite to about 4, with uploads unchanged):
# - WITHOUT ROWID keyed by (user, device, algorithm, upload number), uniqueness checked by the
#   upload: claims 2-3x faster, uploads about 40% more database time each;
# - the same plus the unique index: claims 1.5x faster, uploads 70% more;
# - an extra index in upload order per device instead of the unique one: claims no faster,
#   uploads 30% more.
one_time_keys = sa.Table(
    "one_time_keys",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("device_id", sa.Text, nullable=False),
    sa.Column("algorithm", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("key_json", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(
        ["user_id", "device_id"],
        ["devices.user_id", "devices.device_id"],
        ondelete="CASCADE",
    ),
    sa.UniqueConstraint("user_id", "device_id", "algorithm", "key_id", name="one_time_keys_key"),
)

# SQLite: per device and algorithm, the `id` up to which its one-time keys have been handed
# out. Every key at or below the mark counts as deleted: nothing reads it again, and the device's
# next upload (or housekeeping) deletes those rows and the mark. A claim for many devices so
# changes a few pages of this small table instead of a row and an index entry on a page of
# each device (a 200-device claim: about 4 ms of SQLite instead of 9-10). PostgreSQL, whose
# claims delete and run concurrently (`FOR UPDATE SKIP LOCKED`), leaves it empty.
one_time_key_claims = sa.Table(
    "one_time_key_claims",
    metadata,
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

# At most one fallback key per device and algorithm; `used` once handed out by a claim.
fallback_keys = sa.Table(
    "fallback_keys",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("device_id", sa.Text, primary_key=True),
    sa.Column("algorithm", sa.Text, primary_key=True),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("key_json", sa.Text, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.ForeignKeyConstraint(
        ["user_id", "device_id"],
        ["devices.user_id", "devices.device_id"],
        ondelete="CASCADE",
    ),
)

# The current cross-signing keys: usage is master, self_signing or user_signing; key_id is
# the unpadded-base64 public key (the part after "ed25519:").
cross_signing_keys = sa.Table(
    "cross_signing_keys",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("usage", sa.Text, primary_key=True),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("key_json", sa.Text, nullable=False),
)

# Signatures uploaded through /keys/signatures/upload, merged into /keys/query answers.
# The target is a device (target_key_id = device ID) or a master key (its public key).
cross_signing_signatures = sa.Table(
    "cross_signing_signatures",
    metadata,
    sa.Column(
        "target_user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("target_key_id", sa.Text, primary_key=True),
    sa.Column("signer_user_id", sa.Text, primary_key=True),
    sa.Column("signing_key_id", sa.Text, primary_key=True),
    sa.Column("signature", sa.Text, nullable=False),
)

# One ordered stream of device-list changes (device keys, devices, cross-signing keys), for
# /sync `device_lists` and /keys/changes. device_id is NULL for a cross-signing change.
device_list_changes = sa.Table(
    "device_list_changes",
    metadata,
    sa.Column("stream_id", _ID, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("device_id", sa.Text, nullable=True),
    sa.Index("device_list_changes_user", "user_id", "stream_id"),
    sqlite_autoincrement=True,
)

# -- Account data, filters, profiles, push rules (account-data.yaml, filter.yaml, ...) -------
# One row per (user, room, type); room_id is '' for global account data. `stream_id` is the
# row's position on the account data stream: a write takes the next position from the
# one-row `account_data_stream` counter in its own transaction (the counter's row lock
# orders concurrent writers, so positions commit in order) and an upsert moves the row.
account_data = sa.Table(
    "account_data",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, primary_key=True),
    # The content JSON object as text.
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Index("account_data_user_stream", "user_id", "stream_id"),
)

account_data_stream = sa.Table(
    "account_data_stream",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger, nullable=False),
)

# Filter IDs are small integers allocated per user from 0, as in Synapse.
filters = sa.Table(
    "filters",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("filter_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("filter_json", sa.Text, nullable=False),
)

# One row per profile field; `value` is the field's JSON value as text.
profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("field", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A user's own push rules and their changes to server-default rules, as one JSON document
# (see services/pushrules.py); the full rule set derived from it is also written to the
# account data stream as `m.push_rules` on every change.
push_rules = sa.Table(
    "push_rules",
    metadata,
    sa.Column(
        "user_id",
        sa.Text,
        sa.ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("rules", sa.Text, nullable=False),
)

# -- Rate limits (services/ratelimit.py) ------------------------------------------------------
# One token bucket per limited key (e.g. "keys_claim:@alice:example.org"), shared by every
# worker process on the database. `allowed` is the outcome of the bucket's last request.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("allowed", sa.Boolean, nullable=False),
)
