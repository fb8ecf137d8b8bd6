"""Shared rate-limit buckets, and a repair of anything stored before the edge checks existed.

Since this revision every request body is checked before it is stored (`mxkeys.json_checks`):
integers within canonical JSON's range, no numbers that overflow (`1e999`), bounded nesting.
Rows written before could hold what those checks now refuse, and some of it breaks later
reads (a one-time key holding `1e999` is sent verbatim to whoever claims it and cannot be
decoded by the server to compare a re-upload). This revision deletes such rows:

- backup keys (`room_keys`) with an index or count that is not an integer in
  [0, 2**53 - 1], or whose `session_data` is not a JSON object that passes the checks; the
  `key_count` and `etag` of the versions concerned are corrected;
- one-time and fallback keys whose JSON does not pass the checks (the device uploads new
  ones when the server reports fewer keys).

Device keys, cross-signing keys, to-device messages and account data were always decoded and
re-encoded by the server, so none of them can hold text that fails to decode.

Revision ID: 0007_reliability
Revises: 0002_room_keys, 0003_device_keys, 0004_account_data, 0005_rooms, 0006_to_device
"""

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import op

revision = "0007_reliability"
down_revision = (
    "0002_room_keys",
    "0003_device_keys",
    "0004_account_data",
    "0005_rooms",
    "0006_to_device",
)
branch_labels = None
depends_on = None

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 100
BATCH = 5000


def _valid_json_object(text: Any, canonical: bool) -> bool:
    """The rules of `mxkeys.json_checks` (copied: a migration must not change with the app)."""
    if not isinstance(text, str):
        return False
    try:
        value = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return False
    if not isinstance(value, dict | str):
        return False
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                return False
        elif isinstance(item, float):
            if canonical or item != item or abs(item) == float("inf"):
                return False
        elif level >= MAX_DEPTH:
            return False
        elif isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return True


def _plain(text: str) -> bool:
    """An object of string members only: valid without decoding (see json_checks)."""
    return (
        text[:1] == "{"
        and "{" not in text[1:]
        and "[" not in text
        and text.count(":") == text.count('":"') + text.count('": "')
    )


def _batches(conn: sa.Connection, query: sa.Select) -> Iterable[list[sa.Row]]:
    result = conn.execute(query, execution_options={"stream_results": True, "yield_per": BATCH})
    while rows := result.fetchmany(BATCH):
        yield rows


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
    )
    conn = op.get_bind()
    meta = sa.MetaData()
    room_keys = sa.Table("room_keys", meta, autoload_with=conn)
    versions = sa.Table("room_key_versions", meta, autoload_with=conn)
    otks = sa.Table("one_time_keys", meta, autoload_with=conn)
    fallbacks = sa.Table("fallback_keys", meta, autoload_with=conn)
    sqlite = conn.dialect.name == "sqlite"

    # -- backup keys ------------------------------------------------------------------------
    k = room_keys.c
    pk = (k.user_id, k.version, k.room_id, k.session_id)
    bad: list[tuple[Any, ...]] = []
    fields = (k.first_message_index, k.forwarded_count)
    out_of_range = sa.or_(*(sa.or_(f < 0, f > MAX_SAFE_INT) for f in fields))
    if sqlite:
        # SQLite stores whatever it is given; an INTEGER column can hold a REAL (infinity).
        out_of_range = sa.or_(
            out_of_range, *(sa.func.typeof(f) != "integer" for f in fields)
        )
    bad.extend(tuple(r) for r in conn.execute(sa.select(*pk).where(out_of_range)))
    for rows in _batches(conn, sa.select(*pk, k.session_data)):
        bad.extend(
            tuple(r[:4])
            for r in rows
            if not (_plain(r.session_data) or _valid_json_object(r.session_data, False))
            or not r.session_data.startswith("{")
        )
    if bad:
        delete = room_keys.delete().where(
            k.user_id == sa.bindparam("u"),
            k.version == sa.bindparam("v"),
            k.room_id == sa.bindparam("r"),
            k.session_id == sa.bindparam("s"),
        )
        conn.execute(delete, [{"u": u, "v": v, "r": r, "s": s} for u, v, r, s in set(bad)])
    # Every version's key_count is the real number of its keys (whatever caused a mismatch).
    real = (
        sa.select(sa.func.count())
        .where(k.user_id == versions.c.user_id, k.version == versions.c.version)
        .scalar_subquery()
    )
    conn.execute(
        versions.update()
        .where(versions.c.key_count != real)
        .values(key_count=real, etag=versions.c.etag + 1)
    )

    # -- one-time and fallback keys ------------------------------------------------------------
    for table in (otks, fallbacks):
        key_cols = [c for c in table.primary_key.columns]
        dead = [
            tuple(r[: len(key_cols)])
            for rows in _batches(conn, sa.select(*key_cols, table.c.key_json))
            for r in rows
            if not _valid_json_object(r.key_json, True)
        ]
        if dead:
            condition = sa.and_(*(c == sa.bindparam(f"p{i}") for i, c in enumerate(key_cols)))
            conn.execute(
                table.delete().where(condition),
                [{f"p{i}": v for i, v in enumerate(row)} for row in dead],
            )


def downgrade() -> None:
    op.drop_table("rate_limits")
