"""Hot-path statements, run on the driver's own cursor inside a storage transaction.

Building a SQLAlchemy Core statement, computing its cache key and going through the
execution context costs a few hundred microseconds a statement; sqlite3 or psycopg run
a prepared statement in a few tens. Transactions stay SQLAlchemy's (`Database.read` and
`Database.write`): these statements run on the same connection, inside the same transaction.
The statements requests make most often (a backup upload, a to-device send, a sync's reads)
are written once here as plain SQL, with `?` placeholders (parameters as a sequence) or
`:name` ones (a mapping); PostgreSQL gets the same text with `%s` or `%(name)s` (or a text of
its own where the two dialects differ).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
Params = Sequence[Any] | Mapping[str, Any]


class Statement:
    __slots__ = ("postgresql", "sqlite")

    def __init__(self, sqlite: str, postgresql: str | None = None) -> None:
        source = sqlite if postgresql is None else postgresql
        # psycopg reads `%` as the start of a placeholder: these texts must not hold one.
        assert "%" not in source, source
        self.sqlite = sqlite
        self.postgresql = _NAMED.sub(r"%(\1)s", source).replace("?", "%s")

    def text(self, conn: Connection) -> str:
        return self.postgresql if conn.dialect.name == "postgresql" else self.sqlite


def _text(conn: Connection, statement: Statement | str) -> str:
    """A plain string is already in the connection's own dialect and placeholder style."""
    return statement if isinstance(statement, str) else statement.text(conn)


def _cursor(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


def fetch_all(conn: Connection, statement: Statement | str, params: Params = ()) -> list[Any]:
    """Every row, as tuples."""
    cursor = _cursor(conn)
    try:
        cursor.execute(_text(conn, statement), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def fetch_one(conn: Connection, statement: Statement | str, params: Params = ()) -> Any:
    """The first row as a tuple, or None."""
    cursor = _cursor(conn)
    try:
        cursor.execute(_text(conn, statement), params)
        return cursor.fetchone()
    finally:
        cursor.close()


def execute(conn: Connection, statement: Statement | str, params: Params = ()) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    cursor = _cursor(conn)
    try:
        cursor.execute(_text(conn, statement), params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def execute_many(
    conn: Connection, statement: Statement | str, rows: Iterable[Sequence[Any]]
) -> None:
    """One statement, many parameter rows (psycopg pipelines them)."""
    cursor = _cursor(conn)
    try:
        cursor.executemany(_text(conn, statement), rows)
    finally:
        cursor.close()
