"""User-interactive-auth sessions, kept in the database so any worker can continue one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.schema import uia_sessions


@dataclass(frozen=True, slots=True)
class UiaSession:
    session_id: str
    user_id: str | None
    method: str
    path: str
    completed: list[str]
    created_ts: int


class UiaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_session(
        self, session_id: str, user_id: str | None, method: str, path: str, now_ms: int
    ) -> None:
        def txn(conn: Connection) -> None:
            conn.execute(
                uia_sessions.insert().values(
                    session_id=session_id,
                    user_id=user_id,
                    method=method,
                    path=path,
                    completed="[]",
                    created_ts=now_ms,
                )
            )

        await self.db.write(txn)

    async def get_session(self, session_id: str) -> UiaSession | None:
        def txn(conn: Connection) -> UiaSession | None:
            query = sa.select(uia_sessions).where(uia_sessions.c.session_id == session_id)
            row = conn.execute(query).first()
            if row is None:
                return None
            return UiaSession(
                row.session_id,
                row.user_id,
                row.method,
                row.path,
                json.loads(row.completed),
                row.created_ts,
            )

        return await self.db.read(txn)

    async def mark_completed(self, session_id: str, stage: str) -> list[str]:
        """Add a stage to the session's completed list; returns the new list."""

        def txn(conn: Connection) -> list[str]:
            query = sa.select(uia_sessions.c.completed).where(
                uia_sessions.c.session_id == session_id
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            completed: list[str] = json.loads(row.completed) if row else []
            if stage not in completed:
                completed.append(stage)
                conn.execute(
                    uia_sessions.update()
                    .where(uia_sessions.c.session_id == session_id)
                    .values(completed=json.dumps(completed))
                )
            return completed

        return await self.db.write(txn)

    async def delete_session(self, session_id: str) -> None:
        def txn(conn: Connection) -> None:
            conn.execute(uia_sessions.delete().where(uia_sessions.c.session_id == session_id))

        await self.db.write(txn)

    async def delete_sessions_before(self, cutoff_ms: int) -> int:
        def txn(conn: Connection) -> int:
            result = conn.execute(
                uia_sessions.delete().where(uia_sessions.c.created_ts < cutoff_ms)
            )
            return result.rowcount

        return await self.db.write(txn)
