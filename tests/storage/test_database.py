"""`mxkeys.storage.database`: SQLite's WAL is checkpointed in the background."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa

from mxkeys.storage.database import AUTOCHECKPOINT_SAFETY_NET_PAGES, Database


def test_sqlite_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "hs.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (
                AUTOCHECKPOINT_SAFETY_NET_PAGES
            )

        def fill(conn: sa.Connection) -> None:
            conn.exec_driver_sql("CREATE TABLE blobs (b BLOB)")
            for _ in range(300):
                conn.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(16000))")

        # ~1,200 pages: past SQLite's own threshold (1,000), far below the safety net, so
        # only the background checkpointer moves them into the database file.
        asyncio.run(db.write(fill))
        deadline = time.monotonic() + 5
        while path.stat().st_size < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 4_000_000
    finally:
        db.close()
