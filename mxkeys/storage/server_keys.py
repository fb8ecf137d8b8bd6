"""The server's own signing keys, shared by every worker through the database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.rooms_schema import server_signing_keys


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get_or_create_sync(self, key_id: str, new_seed: str, now_ms: int) -> str:
        """The stored seed for `key_id`, storing `new_seed` first if there is none (the first
        worker to start wins; the others read its key)."""

        def run(conn: Connection) -> str:
            conn.execute(
                dialect_insert(self.db.dialect, server_signing_keys)
                .values(key_id=key_id, seed=new_seed, created_ts=now_ms)
                .on_conflict_do_nothing(index_elements=["key_id"])
            )
            return conn.execute(
                sa.select(server_signing_keys.c.seed).where(
                    server_signing_keys.c.key_id == key_id
                )
            ).scalar_one()

        return self.db.run_sync(run, write=True)
