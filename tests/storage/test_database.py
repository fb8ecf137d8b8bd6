"""`mxkeys.storage.database`: SQLite's WAL is checkpointed in the background."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mxkeys.storage import database
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


def _wal_generation(path: Path) -> bytes:
    """The WAL header's checkpoint sequence number and first salt: both change when a writer
    starts the WAL over (and syncs the new header)."""
    with open(f"{path}-wal", "rb") as wal:
        return wal.read(20)[12:20]


def test_requests_never_start_the_wal_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hs.db"
    db = Database(f"sqlite:///{path}")
    try:
        asyncio.run(db.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")))
        before = _wal_generation(path)
        # The checkpointer copies the WAL, then starts it over itself.
        deadline = time.monotonic() + 5
        while _wal_generation(path) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        started_over = _wal_generation(path)
        assert started_over != before
        # Keep the checkpointer asleep from its next round on, so that only the request
        # below writes to the WAL while we look.
        monkeypatch.setattr(database, "CHECKPOINT_INTERVAL_S", 60)
        time.sleep(2 * 0.25)
        started_over = _wal_generation(path)
        asyncio.run(db.write(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (1)")))
        # The request's commit went on at the end of the WAL: no new header, no sync.
        assert _wal_generation(path) == started_over
        assert asyncio.run(
            db.read(lambda conn: conn.exec_driver_sql("SELECT n FROM t").scalar())
        ) == 1
    finally:
        db.close()


def test_a_checkpoint_held_back_by_a_reader_is_finished_later(tmp_path: Path) -> None:
    """Once the reader is done, the checkpointer finishes the job (and starts the WAL over)
    without waiting for another write."""
    path = tmp_path / "hs.db"
    db = Database(f"sqlite:///{path}")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        asyncio.run(db.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")))
        time.sleep(4 * database.CHECKPOINT_INTERVAL_S)  # checkpointed, WAL started over
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds this snapshot
        asyncio.run(db.write(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (1)")))
        held_back = _wal_generation(path)
        time.sleep(4 * database.CHECKPOINT_INTERVAL_S)
        assert _wal_generation(path) == held_back  # the reader still needs the old frames
        reader.execute("COMMIT")
        deadline = time.monotonic() + 5
        while _wal_generation(path) == held_back and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _wal_generation(path) != held_back
    finally:
        reader.close()
        db.close()
