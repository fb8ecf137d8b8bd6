"""Server-side key backups: backup versions and the room keys stored in them.

Every write to a user's backups runs in one transaction that first serializes with the
user's other backup writes: SQLite write transactions already are (BEGIN IMMEDIATE), on
PostgreSQL the transaction locks the user's `users` row (`FOR NO KEY UPDATE`, which does not
block foreign-key checks against it). The current version is looked up *inside* that
transaction, so a key is only ever stored in the version that is current when it commits,
and `key_count`/`etag` are updated from what the transaction itself changed.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult

from mxkeys.storage.database import Database
from mxkeys.storage.schema import room_key_versions, room_keys
from mxkeys.storage.sql import Statement, execute, execute_many, fetch_all, fetch_one

# (room, session) pairs per lookup statement on SQLite: two bind parameters each, far below
# its limit of 32766 variables. (PostgreSQL takes any number as two arrays.)
LOOKUP_CHUNK = 500
# Rows per batch when streaming a backup out. While a batch is turned into JSON its rows, the
# pieces of text and the encoded chunk are all in memory (about 4 KiB a row); 250 rows keep
# that near 1 MiB whatever the size of the backup.
STREAM_BATCH = 250


class KeyMetadata(Protocol):
    """What the merge rule compares (a stored row or an uploaded key)."""

    @property
    def first_message_index(self) -> int: ...
    @property
    def forwarded_count(self) -> int: ...
    @property
    def is_verified(self) -> bool: ...


# (stored, uploaded) -> whether the uploaded key replaces the stored one.
ShouldReplace = Callable[[KeyMetadata, KeyMetadata], bool]


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: str  # JSON object text
    etag: int
    count: int


@dataclass(frozen=True, slots=True)
class _StoredMetadata:
    first_message_index: int
    forwarded_count: int
    is_verified: bool


@dataclass(frozen=True, slots=True)
class NewRoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: str  # JSON object text


@dataclass(frozen=True, slots=True)
class StoredRoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: str  # JSON object text


@dataclass(frozen=True, slots=True)
class KeysWrite:
    """The outcome of a write to a backup's keys.

    `ok`: written; `etag` and `count` describe the version afterwards. `no_backup`: the user
    has no current backup. `not_found`: the version does not exist (or was deleted).
    `wrong_version`: it exists but is not the current one (`current_version`).
    """

    status: Literal["ok", "no_backup", "not_found", "wrong_version"]
    etag: int = 0
    count: int = 0
    current_version: int | None = None
    inserted: int = 0
    replaced: int = 0


# A row streamed out: (room_id, session_id, first_message_index, forwarded_count,
# is_verified, session_data).
KeyRow = tuple[str, str, int, int, bool, str]

_KEY_COLUMNS = (
    room_keys.c.room_id,
    room_keys.c.session_id,
    room_keys.c.first_message_index,
    room_keys.c.forwarded_count,
    room_keys.c.is_verified,
    room_keys.c.session_data,
)

# The upload's statements are driver-level SQL: building them as SQLAlchemy constructs (a
# VALUES list per batch, a dict per row) cost several times the database work. The column
# order of the row tuples matches the statements below.
_KEY_INSERT_COLUMNS = (
    "user_id, version, room_id, session_id, first_message_index, forwarded_count, "
    "is_verified, session_data"
)
_SQLITE_INSERT = Statement(
    f"INSERT INTO room_keys ({_KEY_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE = Statement(
    "UPDATE room_keys SET first_message_index = ?, forwarded_count = ?, is_verified = ?, "
    "session_data = ? WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?"
)
_LOCK_USER = Statement("SELECT user_id FROM users WHERE user_id = ? FOR NO KEY UPDATE")
_VERSION_COLUMNS = "version, algorithm, auth_data, etag, key_count"
_CURRENT_VERSION = Statement(
    f"SELECT {_VERSION_COLUMNS} FROM room_key_versions WHERE user_id = ? AND NOT deleted "
    "ORDER BY version DESC LIMIT 1"
)
_LIVE_VERSION = Statement(
    f"SELECT {_VERSION_COLUMNS} FROM room_key_versions WHERE user_id = ? AND version = ? "
    "AND NOT deleted"
)
_SET_VERSION_STATE = Statement(
    "UPDATE room_key_versions SET etag = ?, key_count = ? WHERE user_id = ? AND version = ?"
)
_PG_COPY = f"COPY room_keys ({_KEY_INSERT_COLUMNS}) FROM STDIN"
_LOOKUP_COLUMNS = "k.room_id, k.session_id, k.first_message_index, k.forwarded_count, k.is_verified"
# A LATERAL subquery with a LIMIT (there is at most one row: it is the primary key) is one
# index probe per pair; a plain join may become a hash join over the whole version (or worse)
# while the table statistics are stale.
_PG_LOOKUP = (
    "SELECT k.* FROM unnest(%s::text[], %s::text[]) AS p(r, s) CROSS JOIN LATERAL ("
    f"SELECT {_LOOKUP_COLUMNS} FROM room_keys AS k WHERE k.user_id = %s AND k.version = %s "
    "AND k.room_id = p.r AND k.session_id = p.s LIMIT 1) AS k"
)


_STREAM_SELECT = (
    "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, "
    "session_data FROM room_keys WHERE user_id = ? AND version = ?"
)
_STREAM_ALL = Statement(f"{_STREAM_SELECT} ORDER BY room_id, session_id")
_STREAM_ROOM = Statement(f"{_STREAM_SELECT} AND room_id = ? ORDER BY session_id")


@functools.cache
def _sqlite_lookup(pairs: int) -> str:
    """The pairs as a VALUES list, each joined to the primary key: one index seek per pair.
    (SQLite scans the whole version for `(room_id, session_id) IN (...)`.) CROSS JOIN pins
    the VALUES list as the outer loop."""
    values = ", ".join(["(?, ?)"] * pairs)
    return (
        f"WITH p(r, s) AS (VALUES {values}) SELECT {_LOOKUP_COLUMNS} "
        "FROM p CROSS JOIN room_keys AS k WHERE k.user_id = ? AND k.version = ? "
        "AND k.room_id = p.r AND k.session_id = p.s"
    )


class RoomKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- helpers run inside a transaction ------------------------------------------------

    def _lock_user(self, conn: Connection, user_id: str) -> None:
        """Serialize this transaction with the user's other backup writes (PostgreSQL;
        SQLite write transactions are serialized already)."""
        if self.db.dialect == "postgresql":
            fetch_one(conn, _LOCK_USER, (user_id,))

    @staticmethod
    def _version_row(conn: Connection, user_id: str, version: int | None) -> BackupVersion | None:
        """The live (not deleted) version, or the current one when `version` is None."""
        if version is None:
            row = fetch_one(conn, _CURRENT_VERSION, (user_id,))
        else:
            row = fetch_one(conn, _LIVE_VERSION, (user_id, version))
        return None if row is None else BackupVersion(*row)

    @staticmethod
    def _set_version_state(
        conn: Connection, user_id: str, version: int, etag: int, count: int
    ) -> None:
        execute(conn, _SET_VERSION_STATE, (etag, count, user_id, version))

    # -- versions ------------------------------------------------------------------------

    async def create_version(self, user_id: str, algorithm: str, auth_data: str) -> int:
        """A new version, which becomes the current one. Numbers are never reused: deleted
        versions keep their row, and the next number is one past the highest ever used."""

        def txn(conn: Connection) -> int:
            self._lock_user(conn, user_id)
            highest = conn.execute(
                sa.select(sa.func.max(room_key_versions.c.version)).where(
                    room_key_versions.c.user_id == user_id
                )
            ).scalar()
            version = (highest or 0) + 1
            conn.execute(
                room_key_versions.insert().values(
                    user_id=user_id,
                    version=version,
                    algorithm=algorithm,
                    auth_data=auth_data,
                    etag=0,
                    key_count=0,
                    deleted=False,
                )
            )
            return version

        return await self.db.write(txn)

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """A live version, or the current one when `version` is None."""

        def txn(conn: Connection) -> BackupVersion | None:
            return self._version_row(conn, user_id, version)

        return await self.db.read(txn)

    async def update_auth_data(
        self, user_id: str, version: int, algorithm: str, auth_data: str
    ) -> str | None:
        """Replace a live version's auth_data if its algorithm is `algorithm`.

        Returns the version's algorithm (unchanged data when it differs from `algorithm`), or
        None when there is no such live version.
        """

        def txn(conn: Connection) -> str | None:
            self._lock_user(conn, user_id)
            row = self._version_row(conn, user_id, version)
            if row is None:
                return None
            if row.algorithm == algorithm:
                conn.execute(
                    room_key_versions.update()
                    .where(
                        room_key_versions.c.user_id == user_id,
                        room_key_versions.c.version == version,
                    )
                    .values(auth_data=auth_data)
                )
            return row.algorithm

        return await self.db.write(txn)

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Delete a version and all of its keys. True if the version exists or existed
        (deleting a deleted version again succeeds); False if it never existed."""

        def txn(conn: Connection) -> bool:
            self._lock_user(conn, user_id)
            row = conn.execute(
                sa.select(room_key_versions.c.deleted).where(
                    room_key_versions.c.user_id == user_id,
                    room_key_versions.c.version == version,
                )
            ).first()
            if row is None:
                return False
            if not row.deleted:
                conn.execute(
                    room_keys.delete().where(
                        room_keys.c.user_id == user_id, room_keys.c.version == version
                    )
                )
                conn.execute(
                    room_key_versions.update()
                    .where(
                        room_key_versions.c.user_id == user_id,
                        room_key_versions.c.version == version,
                    )
                    .values(
                        deleted=True,
                        key_count=0,
                        etag=room_key_versions.c.etag + 1,
                        auth_data="{}",
                    )
                )
            return True

        return await self.db.write(txn)

    # -- keys ----------------------------------------------------------------------------

    def _existing(
        self, conn: Connection, user_id: str, version: int, keys: Sequence[NewRoomKey]
    ) -> dict[tuple[str, str], Any]:
        """The stored metadata of the uploaded (room, session) pairs that exist."""
        found: dict[tuple[str, str], Any] = {}
        if self.db.dialect == "postgresql":
            params: Any = (
                [k.room_id for k in keys],
                [k.session_id for k in keys],
                user_id,
                version,
            )
            chunks = [(_PG_LOOKUP, params)]
        else:
            chunks = []
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start : start + LOOKUP_CHUNK]
                flat: list[Any] = []
                for k in chunk:
                    flat.append(k.room_id)
                    flat.append(k.session_id)
                flat.append(user_id)
                flat.append(version)
                chunks.append((_sqlite_lookup(len(chunk)), tuple(flat)))
        for sql, params in chunks:
            for row in fetch_all(conn, sql, params):
                found[(row[0], row[1])] = _StoredMetadata(row[2], row[3], bool(row[4]))
        return found

    def _insert(self, conn: Connection, user_id: str, version: int, keys: list[NewRoomKey]) -> None:
        rows = [
            (
                user_id,
                version,
                k.room_id,
                k.session_id,
                k.first_message_index,
                k.forwarded_count,
                k.is_verified,
                k.session_data,
            )
            for k in keys
        ]
        if self.db.dialect == "postgresql":
            # COPY, on this transaction's connection: the cheapest bulk insert PostgreSQL has
            # (a multi-row INSERT or unnest() of arrays costs two to four times as much).
            driver = conn.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            execute_many(conn, _SQLITE_INSERT, rows)

    def _update(self, conn: Connection, user_id: str, version: int, keys: list[NewRoomKey]) -> None:
        # One statement per row in one executemany (pipelined by psycopg): each is a
        # primary-key probe, a plan no table statistics can spoil.
        execute_many(
            conn,
            _UPDATE,
            [
                (
                    k.first_message_index,
                    k.forwarded_count,
                    k.is_verified,
                    k.session_data,
                    user_id,
                    version,
                    k.room_id,
                    k.session_id,
                )
                for k in keys
            ],
        )

    async def upload_keys(
        self,
        user_id: str,
        version: int | None,
        keys: Sequence[NewRoomKey],
        should_replace: ShouldReplace,
    ) -> KeysWrite:
        """Merge keys into `version`, which must be the current version.

        `version` None stands for a version ID that cannot exist. Keys for the same
        (room, session) must not repeat within `keys`. One transaction: the version check,
        one lookup of the stored rows, one batched insert, one batched update and the
        version's new etag and count.
        """

        def txn(conn: Connection) -> KeysWrite:
            self._lock_user(conn, user_id)
            current = self._version_row(conn, user_id, None)
            if current is None:
                return KeysWrite("no_backup")
            if version != current.version:
                if version is not None and self._version_row(conn, user_id, version):
                    return KeysWrite("wrong_version", current_version=current.version)
                return KeysWrite("not_found")
            existing = self._existing(conn, user_id, version, keys) if current.count else {}
            inserts: list[NewRoomKey] = []
            updates: list[NewRoomKey] = []
            for key in keys:
                stored = existing.get((key.room_id, key.session_id))
                if stored is None:
                    inserts.append(key)
                elif should_replace(stored, key):
                    updates.append(key)
            etag, count = current.etag, current.count
            if inserts:
                self._insert(conn, user_id, version, inserts)
            if updates:
                self._update(conn, user_id, version, updates)
            if inserts or updates:
                etag += 1
                count += len(inserts)
                self._set_version_state(conn, user_id, version, etag, count)
            return KeysWrite("ok", etag, count, version, len(inserts), len(updates))

        return await self.db.write(txn)

    async def delete_keys(
        self,
        user_id: str,
        version: int | None,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> KeysWrite:
        """Delete a live version's keys: all, a room's, or one session's."""

        def txn(conn: Connection) -> KeysWrite:
            self._lock_user(conn, user_id)
            row = None if version is None else self._version_row(conn, user_id, version)
            if row is None or version is None:
                return KeysWrite("not_found")
            condition = sa.and_(room_keys.c.user_id == user_id, room_keys.c.version == version)
            if room_id is not None:
                condition = sa.and_(condition, room_keys.c.room_id == room_id)
            if session_id is not None:
                condition = sa.and_(condition, room_keys.c.session_id == session_id)
            etag, count = row.etag, row.count
            if count:
                result: CursorResult[Any] = conn.execute(room_keys.delete().where(condition))
                deleted = result.rowcount
                if deleted:
                    etag += 1
                    count -= deleted
                    self._set_version_state(conn, user_id, version, etag, count)
            return KeysWrite("ok", etag, count, version)

        return await self.db.write(txn)

    async def get_key(
        self, user_id: str, version: int | None, room_id: str, session_id: str
    ) -> tuple[bool, StoredRoomKey | None]:
        """(whether the live version exists, the key if stored)."""

        def txn(conn: Connection) -> tuple[bool, StoredRoomKey | None]:
            if version is None or self._version_row(conn, user_id, version) is None:
                return False, None
            row = conn.execute(
                sa.select(*_KEY_COLUMNS).where(
                    room_keys.c.user_id == user_id,
                    room_keys.c.version == version,
                    room_keys.c.room_id == room_id,
                    room_keys.c.session_id == session_id,
                )
            ).first()
            if row is None:
                return True, None
            return True, StoredRoomKey(*row)

        return await self.db.read(txn)

    async def stream_keys(
        self, user_id: str, version: int | None, room_id: str | None = None
    ) -> KeyStream | None:
        """A live version's keys (or one room's), ordered by room then session, in batches
        read from one transaction (one snapshot). None if the version does not exist.

        The rows come straight from a driver cursor (a server-side cursor on PostgreSQL):
        SQLAlchemy's row processing cost more than SQLite reading them. `is_verified` may come
        back as 0/1 on SQLite. The stream holds a pooled connection: the caller must
        `close()` it.
        """
        if version is None:
            return None
        postgres = self.db.dialect == "postgresql"
        statement = _STREAM_ROOM if room_id is not None else _STREAM_ALL
        sql = statement.postgresql if postgres else statement.sqlite
        params: tuple[Any, ...] = (
            (user_id, version) if room_id is None else (user_id, version, room_id)
        )
        engine = self.db.engine

        def open_stream() -> KeyStream | None:
            conn = engine.connect()
            try:
                if postgres:
                    # One snapshot for the version check and every batch.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.begin()
                if self._version_row(conn, user_id, version) is None:
                    conn.close()
                    return None
                driver: Any = conn.connection.driver_connection
                # A named psycopg cursor is a server-side cursor: rows arrive batch by batch.
                cursor = driver.cursor(name="room_keys_stream") if postgres else driver.cursor()
                cursor.execute(sql, params)
                return KeyStream(conn, cursor, cursor.fetchmany(STREAM_BATCH))
            except BaseException:
                conn.close()
                raise

        return await asyncio.get_running_loop().run_in_executor(None, open_stream)


class KeyStream:
    """Batches of rows from one open read transaction (see `RoomKeyStore.stream_keys`).

    The connection is used from executor threads one call at a time; a lock makes `close()`
    (say after a cancelled request) wait for a fetch still running.
    """

    def __init__(self, conn: Connection, cursor: Any, first: list[KeyRow]) -> None:
        self._conn = conn
        self._cursor = cursor
        self._first = first
        self._lock = threading.Lock()
        self._closed = False

    def _fetch(self) -> list[KeyRow]:
        with self._lock:
            if self._closed:
                return []
            return self._cursor.fetchmany(STREAM_BATCH)

    def _close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._cursor.close()
                finally:
                    self._conn.close()

    async def batches(self) -> AsyncIterator[list[KeyRow]]:
        loop = asyncio.get_running_loop()
        batch = self._first
        while batch:
            yield batch
            if len(batch) < STREAM_BATCH:
                break
            batch = await loop.run_in_executor(None, self._fetch)
        await self.close()

    async def close(self) -> None:
        if not self._closed:
            await asyncio.get_running_loop().run_in_executor(None, self._close)
