"""The database handle: one engine, a storage thread pool, and transactions.

SQL runs synchronously on a small thread pool so the event loop never blocks. Each storage
method hands one function to `read` or `write`, which runs it inside a single transaction on
one thread: a request costs one hop to a storage thread, however many statements it runs.

SQLite runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives a crash of
the process (only a power loss can cost the last commits). Write transactions start with
`BEGIN IMMEDIATE` so two writers never deadlock upgrading read locks, and writes inside this
process are serialized by a lock so they queue here instead of spinning on `SQLITE_BUSY`.

Checkpoints (copying the WAL back into the database file, with an fsync) run on a background
thread of their own (`_Checkpointer`), not inside whichever request's commit crossed SQLite's
automatic threshold: a write that touches many pages, such as a `/keys/claim` for hundreds of
devices, would otherwise pay for a checkpoint every other time. Durability is unchanged: a
commit is in the WAL either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")

_WRITE = "mxkeys_write"
logger = logging.getLogger(__name__)

# SQLite: the background checkpointer runs this often. Connections checkpoint by themselves
# only past the safety net (if the checkpointer could not keep up), where SQLite's default is
# 1,000 pages.
CHECKPOINT_INTERVAL_S = 0.25
AUTOCHECKPOINT_SAFETY_NET_PAGES = 50_000


def normalize_url(url: str) -> str:
    """Map the user-facing URL forms onto SQLAlchemy driver URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+pysqlite://" + url[len("sqlite://") :]
    return url


def create_db_engine(url: str, pool_size: int = 8) -> Engine:
    sa_url = sa.engine.make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            sa_url,
            pool_size=pool_size,
            max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        sa_url,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=True,
        # Prepared statements are reused by psycopg after a few executions.
        connect_args={"prepare_threshold": 5},
    )


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; `on_begin` issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_SAFETY_NET_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        # Straight to the driver: a statement through SQLAlchemy costs several times more.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


class _Checkpointer:
    """Checkpoints an SQLite database's WAL from a thread of its own (see the module's doc).

    PASSIVE checkpoints never block readers or writers; they copy what no reader still needs.
    Once all of the WAL has been copied, the next writer starts it over from the beginning,
    and with `synchronous=NORMAL` SQLite syncs the new WAL header to disk inside that
    writer's commit: an fsync (0.3-0.6 ms here) in whichever request wrote first after each
    checkpoint. So after a complete checkpoint this thread starts the WAL over itself, with a
    write of its own that changes only the database header's `user_version` (mxkeys keeps its
    schema version in Alembic's table, not there), and requests' commits never sync.

    A checkpoint runs only when another connection has committed since the last complete one
    (`PRAGMA data_version`, which this thread's own writes do not move): otherwise each
    restart write would be checkpointed in turn and followed by another. One that a reader
    kept from copying everything is tried again at the next round.
    """

    def __init__(self, path: str, write_lock: threading.Lock) -> None:
        self.path = path
        self._write_lock = write_lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mxkeys-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_SAFETY_NET_PAGES}")
            seen = None
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version == seen:
                        continue  # nothing new in the WAL
                    busy, frames, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                    if busy or copied < frames:
                        continue  # a reader still needs part of it: try again next time
                    seen = version
                    if frames > 0:
                        self._start_wal_over(conn)
                except sqlite3.Error as e:  # e.g. the disk is full: try again next time
                    logger.warning("WAL checkpoint failed: %s", e)
        finally:
            conn.close()

    def _start_wal_over(self, conn: sqlite3.Connection) -> None:
        """Commit a one-page change, which starts the fully copied WAL over (and syncs its
        header) here rather than in a request. In the process's write queue, like any write."""
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute(f"PRAGMA user_version = {int(version) ^ 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Database:
    """An engine plus the thread pool that runs its transactions."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self.engine = create_db_engine(url, pool_size)
        self.dialect = self.engine.dialect.name  # "sqlite" or "postgresql"
        self._executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="mxkeys-db")
        self._commit_hooks: dict[str, Callable[[Any], None]] = {}
        # SQLite has one writer at a time; queue our own writers on a lock.
        self._write_lock: threading.Lock | None = (
            threading.Lock() if self.dialect == "sqlite" else None
        )
        database = self.engine.url.database
        self._checkpointer = (
            _Checkpointer(database, self._write_lock)
            if self._write_lock is not None and database and database != ":memory:"
            else None
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def on_commit(self, key: str, hook: Callable[[Any], None]) -> None:
        """Call `hook(value)` after a transaction that set `conn.info[key]` commits (in the
        storage thread; rolled-back transactions call nothing)."""
        self._commit_hooks[key] = hook

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[Connection]:
        lock = self._write_lock if write else None
        if lock is not None:
            lock.acquire()
        pending: dict[str, Any] = {}
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(**{_WRITE: True})
                try:
                    with conn.begin():
                        yield conn
                finally:
                    # conn.info outlives the transaction (it belongs to the pooled
                    # connection): always take our keys out of it.
                    pending = {k: conn.info.pop(k) for k in list(self._commit_hooks)
                               if k in conn.info}
        finally:
            if lock is not None:
                lock.release()
        for key, value in pending.items():
            self._commit_hooks[key](value)

    def run_sync(self, fn: Callable[[Connection], T], write: bool = True) -> T:
        with self._transaction(write) as conn:
            return fn(conn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, fn, False)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, fn, True)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT supporting `on_conflict_do_nothing/update` on either backend."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
