"""Account data: per-user JSON objects, global or per room, on an ordered stream.

Every write takes the next position of the account data stream from the one-row
`account_data_stream` counter, inside the writing transaction. Incrementing the counter locks
its row until commit (PostgreSQL; SQLite serializes all writers anyway), so positions are
allocated in commit order and a reader that saw position N has seen every row at or below N:
`/sync` can never skip a row that committed late. An upsert moves the row to the new
position, so `get_changes` reports each (room, type) once, with its newest content.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.schema import account_data, account_data_stream

GLOBAL = ""  # room_id of global account data


def _room_key(room_id: str | None) -> str:
    return GLOBAL if room_id is None else room_id


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def next_position_in(self, conn: Connection) -> int:
        """Allocate the next stream position inside the caller's write transaction."""
        stmt = (
            dialect_insert(self.db.dialect, account_data_stream)
            .values(id=1, position=1)
            .on_conflict_do_update(
                index_elements=["id"],
                set_={"position": account_data_stream.c.position + 1},
            )
            .returning(account_data_stream.c.position)
        )
        return int(conn.execute(stmt).scalar_one())

    def put_in(
        self, conn: Connection, user_id: str, room_id: str | None, data_type: str, content: str
    ) -> int:
        """Upsert one entry inside the caller's write transaction; its new stream position."""
        position = self.next_position_in(conn)
        stmt = dialect_insert(self.db.dialect, account_data).values(
            user_id=user_id,
            room_id=_room_key(room_id),
            type=data_type,
            content=content,
            stream_id=position,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id", "room_id", "type"],
                set_={"content": stmt.excluded.content, "stream_id": stmt.excluded.stream_id},
            )
        )
        return position

    async def put(self, user_id: str, room_id: str | None, data_type: str, content: str) -> int:
        """Store `content` (JSON object text); returns the entry's new stream position."""
        return await self.db.write(
            lambda conn: self.put_in(conn, user_id, room_id, data_type, content)
        )

    async def get(self, user_id: str, room_id: str | None, data_type: str) -> str | None:
        """The content JSON text, or None."""

        def txn(conn: Connection) -> str | None:
            query = sa.select(account_data.c.content).where(
                account_data.c.user_id == user_id,
                account_data.c.room_id == _room_key(room_id),
                account_data.c.type == data_type,
            )
            return conn.execute(query).scalar_one_or_none()

        return await self.db.read(txn)

    async def current_position(self) -> int:
        """The newest committed position of the stream (0 before any write)."""

        def txn(conn: Connection) -> int:
            query = sa.select(account_data_stream.c.position).where(account_data_stream.c.id == 1)
            position = conn.execute(query).scalar_one_or_none()
            return int(position or 0)

        return await self.db.read(txn)

    async def get_changes(
        self, user_id: str, from_pos: int, to_pos: int
    ) -> list[tuple[str | None, str, str]]:
        """`(room_id or None for global, type, content JSON text)` of the user's entries with
        `from_pos < stream_id <= to_pos`, oldest first; `from_pos` 0 gives everything."""

        def txn(conn: Connection) -> list[tuple[str | None, str, str]]:
            query = (
                sa.select(account_data.c.room_id, account_data.c.type, account_data.c.content)
                .where(
                    account_data.c.user_id == user_id,
                    account_data.c.stream_id > from_pos,
                    account_data.c.stream_id <= to_pos,
                )
                .order_by(account_data.c.stream_id)
            )
            return [
                (None if row.room_id == GLOBAL else row.room_id, row.type, row.content)
                for row in conn.execute(query)
            ]

        return await self.db.read(txn)

    async def changes_since(
        self, user_id: str, after: int
    ) -> tuple[int, list[tuple[str | None, str, str]]]:
        """The stream's current position and the user's changes after `after` up to it, read
        in one transaction (what `/sync` needs)."""

        def txn(conn: Connection) -> tuple[int, list[tuple[str | None, str, str]]]:
            position = conn.execute(
                sa.select(account_data_stream.c.position).where(account_data_stream.c.id == 1)
            ).scalar_one_or_none()
            position = int(position or 0)
            if position <= after:
                return position, []
            query = (
                sa.select(account_data.c.room_id, account_data.c.type, account_data.c.content)
                .where(
                    account_data.c.user_id == user_id,
                    account_data.c.stream_id > after,
                    account_data.c.stream_id <= position,
                )
                .order_by(account_data.c.stream_id)
            )
            return position, [
                (None if row.room_id == GLOBAL else row.room_id, row.type, row.content)
                for row in conn.execute(query)
            ]

        return await self.db.read(txn)
