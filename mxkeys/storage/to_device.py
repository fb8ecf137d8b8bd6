"""To-device messages: one batched write per request, delivery per device in stream order.

Positions come from the `stream_positions` row of the stream, incremented in the writing
transaction: on PostgreSQL the row lock is held until commit, so positions become visible in
the order they were handed out and a sync never skips a message committed late.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.sql import Statement, execute, fetch_all, fetch_one
from mxkeys.storage.to_device_schema import to_device_txns

STREAM = "to_device"
logger = logging.getLogger(__name__)
_json_encode = msgspec.json.Encoder().encode

# Which of many (user, device) pairs are existing devices, and whether each one's inbox holds
# :cap messages already (counting stops there).
_EXISTING = Statement(
    # SQLite
    "SELECT v.user_id, v.device_id, (SELECT count(*) FROM (SELECT 1 FROM device_inbox AS i "
    "WHERE i.user_id = v.user_id AND i.device_id = v.device_id LIMIT :cap)) >= :cap "
    "FROM json_each(:targets) AS t JOIN devices AS v "
    "ON v.user_id = json_extract(t.value, '$[0]') AND v.device_id = json_extract(t.value, '$[1]')",
    # PostgreSQL
    "SELECT v.user_id, v.device_id, (SELECT count(*) FROM (SELECT 1 FROM device_inbox AS i "
    "WHERE i.user_id = v.user_id AND i.device_id = v.device_id LIMIT :cap) AS q) >= :cap "
    "FROM unnest(CAST(:users AS text[]), CAST(:devices AS text[])) AS t(u, d) "
    "JOIN devices AS v ON v.user_id = t.u AND v.device_id = t.d",
)
# A request's messages, numbered from :first in the order given.
_INSERT = Statement(
    # SQLite
    "INSERT INTO device_inbox (stream_id, user_id, device_id, sender, type, content) "
    "SELECT :first + t.key, json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), "
    ":sender, :type, json_extract(t.value, '$[2]') FROM json_each(:rows) AS t",
    # PostgreSQL
    "INSERT INTO device_inbox (stream_id, user_id, device_id, sender, type, content) "
    "SELECT :first + t.n - 1, t.u, t.d, :sender, :type, t.c FROM unnest(CAST(:users AS text[]), "
    "CAST(:devices AS text[]), CAST(:contents AS text[])) WITH ORDINALITY AS t(u, d, c, n)",
)

# Delete, per (user, device, position), the device's messages up to the position.
_DELETE_ACKED = Statement(
    # SQLite
    "DELETE FROM device_inbox WHERE stream_id IN (SELECT i.stream_id FROM json_each(:acks) "
    "AS t JOIN device_inbox AS i ON i.user_id = json_extract(t.value, '$[0]') AND "
    "i.device_id = json_extract(t.value, '$[1]') AND i.stream_id <= json_extract(t.value, '$[2]'))",
    # PostgreSQL
    "DELETE FROM device_inbox AS i USING unnest(CAST(:users AS text[]), "
    "CAST(:devices AS text[]), CAST(:positions AS bigint[])) AS t(u, d, p) "
    "WHERE i.user_id = t.u AND i.device_id = t.d AND i.stream_id <= t.p",
)

# Pending messages of many devices: per device, the first `n` rows after its cursor (from
# its own index range), and whether rows at or before the cursor (acknowledged, not yet
# deleted) remain. One row per device without messages (stream_id NULL); ordered by stream.
_PENDING = Statement(
    # SQLite
    "WITH t AS (SELECT json_extract(value, '$[0]') AS u, json_extract(value, '$[1]') AS d, "
    "json_extract(value, '$[2]') AS a FROM json_each(:targets)) "
    "SELECT t.u, t.d, i.stream_id, i.sender, i.type, i.content, EXISTS (SELECT 1 FROM "
    "device_inbox AS s WHERE s.user_id = t.u AND s.device_id = t.d AND s.stream_id <= t.a) "
    "FROM t LEFT JOIN device_inbox AS i ON i.stream_id IN (SELECT stream_id FROM device_inbox "
    "WHERE user_id = t.u AND device_id = t.d AND stream_id > t.a AND stream_id <= :position "
    "ORDER BY stream_id LIMIT :n) ORDER BY i.stream_id",
    # PostgreSQL
    "SELECT t.u, t.d, i.stream_id, i.sender, i.type, i.content, t.stale "
    "FROM (SELECT u, d, a, EXISTS (SELECT 1 FROM device_inbox AS s WHERE s.user_id = u "
    "AND s.device_id = d AND s.stream_id <= a) AS stale FROM unnest(CAST(:users AS text[]), "
    "CAST(:devices AS text[]), CAST(:afters AS bigint[])) AS r(u, d, a)) AS t "
    "LEFT JOIN LATERAL (SELECT stream_id, sender, type, content FROM device_inbox "
    "WHERE user_id = t.u AND device_id = t.d AND stream_id > t.a AND stream_id <= :position "
    "ORDER BY stream_id LIMIT :n) AS i ON true ORDER BY i.stream_id",
)


_ALLOCATE = Statement(
    "INSERT INTO stream_positions (stream, position) VALUES (:stream, :count) "
    "ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + :count "
    "RETURNING position"
)
_POSITION = Statement("SELECT position FROM stream_positions WHERE stream = ?")
_NEW_TXN = Statement(
    "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id, device_id, txn_id) DO NOTHING RETURNING txn_id"
)
_DEVICES_OF = Statement(
    "SELECT user_id, device_id FROM devices WHERE user_id IN (SELECT value FROM json_each(?)) "
    "ORDER BY user_id, device_id",
    "SELECT user_id, device_id FROM devices WHERE user_id = ANY(CAST(? AS text[])) "
    "ORDER BY user_id, device_id",
)


def allocate_positions(conn: Connection, stream: str, count: int) -> int:
    """Reserve `count` positions on `stream`; returns the last one."""
    return int(fetch_one(conn, _ALLOCATE, {"stream": stream, "count": count})[0])


def read_position(conn: Connection, stream: str) -> int:
    row = fetch_one(conn, _POSITION, (stream,))
    return int(row[0]) if row is not None else 0


class OutgoingMessage(NamedTuple):
    """(A tuple: a request makes one per recipient device, and a frozen dataclass costs
    several times more to build.)"""

    user_id: str
    device_id: str  # or "*" for all of the user's devices
    content: str  # JSON text


@dataclass(frozen=True, slots=True)
class InboxMessage:
    stream_id: int
    sender: str
    type: str
    content: str


@dataclass(frozen=True, slots=True)
class SentMessages:
    """What one send stored: `rows[i]` (user, device, content) at stream position
    `first + i`; the positions `first` to `first + len(rows) - 1` are all this send's."""

    first: int
    rows: list[tuple[str, str, str]]

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1


class ToDeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def send(
        self,
        sender: str,
        sender_device: str,
        txn_id: str,
        event_type: str,
        messages: Sequence[OutgoingMessage],
        now_ms: int,
        max_queued: int | None = None,
    ) -> SentMessages | None:
        """Queue the messages for existing devices; None if `txn_id` was already used.
        Returns what was stored, in stream order.

        A device already holding `max_queued` undelivered messages gets none (its inbox is
        full: the message is dropped and logged); the others get theirs."""

        def run(conn: Connection) -> SentMessages | None:
            fresh = fetch_one(conn, _NEW_TXN, (sender, sender_device, txn_id, now_ms))
            if fresh is None:
                return None
            rows, checked, full = self._expand(conn, messages, max_queued)
            if rows and max_queued is not None:
                # Devices reached through "*" were not counted with the named ones.
                unchecked = {(u, d) for u, d, _ in rows} - checked
                if unchecked:
                    full |= self._existing_devices(conn, sorted(unchecked), max_queued)[1]
                if full:
                    logger.warning(
                        "dropped to-device messages for %d devices whose inbox is full "
                        "(%d messages)", len(full), max_queued,
                    )
                    rows = [row for row in rows if (row[0], row[1]) not in full]
            if not rows:
                return SentMessages(0, [])
            last = allocate_positions(conn, STREAM, len(rows))
            first = last - len(rows) + 1
            # One statement for every row, whatever their number.
            params: dict[str, object] = {"first": first, "sender": sender, "type": event_type}
            if self.db.dialect == "postgresql":
                params["users"] = [user_id for user_id, _, _ in rows]
                params["devices"] = [device_id for _, device_id, _ in rows]
                params["contents"] = [content for _, _, content in rows]
            else:
                params["rows"] = _json_encode(rows).decode()
            execute(conn, _INSERT, params)
            return SentMessages(first, rows)

        return await self.db.write(run)

    def _expand(
        self, conn: Connection, messages: Sequence[OutgoingMessage], max_queued: int | None
    ) -> tuple[list[tuple[str, str, str]], set[tuple[str, str]], set[tuple[str, str]]]:
        """(user, device, content) for every existing target device, in request order; the
        devices named directly (whose queues were counted in the same statement) and those
        of them holding `max_queued` messages already."""
        star_users = sorted({m.user_id for m in messages if m.device_id == "*"})
        named = sorted({(m.user_id, m.device_id) for m in messages if m.device_id != "*"})
        existing: set[tuple[str, str]] = set()
        full: set[tuple[str, str]] = set()
        by_user: dict[str, list[str]] = {}
        if star_users:
            users: object = (
                star_users if self.db.dialect == "postgresql"
                else _json_encode(star_users).decode()
            )
            for user_id, device_id in fetch_all(conn, _DEVICES_OF, (users,)):
                by_user.setdefault(user_id, []).append(device_id)
        if named:
            existing, full = self._existing_devices(conn, named, max_queued)
        rows: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for m in messages:
            targets = by_user.get(m.user_id, []) if m.device_id == "*" else (
                [m.device_id] if (m.user_id, m.device_id) in existing else []
            )
            for device_id in targets:
                # One message per device and request: a device named both directly and
                # through "*" gets the explicitly addressed content.
                if (m.user_id, device_id) not in seen:
                    seen.add((m.user_id, device_id))
                    rows.append((m.user_id, device_id, m.content))
        return rows, existing, full

    def _existing_devices(
        self, conn: Connection, pairs: Sequence[tuple[str, str]], max_queued: int | None
    ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """Which of the (user, device) pairs are existing devices, and which of those hold
        `max_queued` undelivered messages already. One statement for all of them."""
        # (Without a limit the count stops at once: cap 1, and the answer is unused.)
        cap = max_queued if max_queued is not None else 1
        if self.db.dialect == "postgresql":
            params: dict[str, object] = {
                "users": [u for u, _ in pairs], "devices": [d for _, d in pairs], "cap": cap,
            }
        else:
            params = {"targets": _json_encode(list(pairs)).decode(), "cap": cap}
        found = fetch_all(conn, _EXISTING, params)
        existing: set[tuple[str, str]] = set()
        full: set[tuple[str, str]] = set()
        for user_id, device_id, is_full in found:
            existing.add((user_id, device_id))
            if is_full and max_queued is not None:
                full.add((user_id, device_id))
        return existing, full

    async def current_position(self) -> int:
        return await self.db.read(lambda conn: read_position(conn, STREAM))

    async def pending_many(
        self, requests: Sequence[tuple[str, str, int]], limit: int
    ) -> tuple[int, dict[tuple[str, str], tuple[list[InboxMessage], bool, bool]]]:
        """For many devices at once (one transaction, one query): the stream's position, and
        per (user, device, after) the device's messages in (after, position], at most
        `limit`, whether more wait, and whether acknowledged rows (<= after) are still
        stored. Each device's messages are read from its own index range, so neither old
        acknowledged rows nor a long queue cost more than `limit` + 1 rows."""
        def read(
            conn: Connection,
        ) -> tuple[int, dict[tuple[str, str], tuple[list[InboxMessage], bool, bool]]]:
            position = read_position(conn, STREAM)
            result: dict[tuple[str, str], tuple[list[InboxMessage], bool, bool]] = {}
            if not requests:
                return position, result
            if self.db.dialect == "postgresql":
                params: dict[str, object] = {
                    "users": [u for u, _, _ in requests],
                    "devices": [d for _, d, _ in requests],
                    "afters": [a for _, _, a in requests],
                }
            else:
                params = {"targets": _json_encode([list(r) for r in requests]).decode()}
            params["position"] = position
            params["n"] = limit + 1
            found: dict[tuple[str, str], list[InboxMessage]] = {}
            stale: set[tuple[str, str]] = set()
            for user_id, device_id, stream_id, sender, event_type, content, old in (
                fetch_all(conn, _PENDING, params)
            ):
                key = (user_id, device_id)
                messages = found.setdefault(key, [])
                if stream_id is not None:
                    messages.append(InboxMessage(stream_id, sender, event_type, content))
                if old:
                    stale.add(key)
            for user_id, device_id, _ in requests:
                key = (user_id, device_id)
                messages = found.get(key, [])
                result[key] = (messages[:limit], len(messages) > limit, key in stale)
            return position, result

        return await self.db.read(read)

    async def delete_acknowledged(self, acks: Sequence[tuple[str, str, int]]) -> None:
        """Delete, for each (user, device, position), the device's messages up to the
        position: one transaction for any number of devices."""
        if not acks:
            return
        if self.db.dialect == "postgresql":
            params: dict[str, object] = {
                "users": [u for u, _, _ in acks],
                "devices": [d for _, d, _ in acks],
                "positions": [p for _, _, p in acks],
            }
        else:
            params = {"acks": _json_encode([list(a) for a in acks]).decode()}

        def run(conn: Connection) -> None:
            execute(conn, _DELETE_ACKED, params)

        await self.db.write(run)


async def delete_transactions_before(db: Database, cutoff_ms: int) -> int:
    """Forget /sendToDevice transaction IDs older than the cutoff (retries come sooner)."""

    def run(conn: Connection) -> int:
        result = conn.execute(
            to_device_txns.delete().where(to_device_txns.c.created_ts < cutoff_ms)
        )
        return result.rowcount

    return await db.write(run)
