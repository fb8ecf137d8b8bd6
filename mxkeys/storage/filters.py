"""Stored filters (filter.yaml): per-user integer IDs, allocated from 0 as Synapse does."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.schema import filters, users


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, filter_json: str) -> int:
        """Store a filter and return its ID; re-uploading an identical filter returns the ID
        it already has (clients upload the same filter at every start, as Synapse dedupes)."""

        def txn(conn: Connection) -> int:
            if self.db.dialect == "postgresql":
                # Serialize this user's uploads so two cannot allocate the same ID.
                conn.execute(
                    sa.select(users.c.user_id).where(users.c.user_id == user_id).with_for_update()
                )
            existing = conn.execute(
                sa.select(filters.c.filter_id)
                .where(filters.c.user_id == user_id, filters.c.filter_json == filter_json)
                .order_by(filters.c.filter_id)
                .limit(1)
            ).scalar_one_or_none()
            if existing is not None:
                return int(existing)
            highest = conn.execute(
                sa.select(sa.func.max(filters.c.filter_id)).where(filters.c.user_id == user_id)
            ).scalar_one_or_none()
            filter_id = 0 if highest is None else int(highest) + 1
            conn.execute(
                filters.insert().values(
                    user_id=user_id, filter_id=filter_id, filter_json=filter_json
                )
            )
            return filter_id

        return await self.db.write(txn)

    async def get(self, user_id: str, filter_id: int) -> str | None:
        def txn(conn: Connection) -> str | None:
            query = sa.select(filters.c.filter_json).where(
                filters.c.user_id == user_id, filters.c.filter_id == filter_id
            )
            return conn.execute(query).scalar_one_or_none()

        return await self.db.read(txn)
