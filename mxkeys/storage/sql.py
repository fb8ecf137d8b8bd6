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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")
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


def _run(
    conn: Connection,
    statement: Statement | str,
    params: Params | Iterable[Sequence[Any]],
    take: Callable[[Any], T],
    many: bool = False,
) -> T:
    """Run the statement on a cursor of the transaction's driver connection, take what the
    caller wants from the cursor, and close it."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(_text(conn, statement), params)
        else:
            cursor.execute(_text(conn, statement), params)
        return take(cursor)
    finally:
        cursor.close()


def _rows(cursor: Any) -> list[Any]:
    return cursor.fetchall()


def _row(cursor: Any) -> Any:
    return cursor.fetchone()


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount)


def _nothing(cursor: Any) -> None:
    return None


def fetch_all(conn: Connection, statement: Statement | str, params: Params = ()) -> list[Any]:
    """Every row, as tuples."""
    return _run(conn, statement, params, _rows)


def fetch_one(conn: Connection, statement: Statement | str, params: Params = ()) -> Any:
    """The first row as a tuple, or None."""
    return _run(conn, statement, params, _row)


def execute(conn: Connection, statement: Statement | str, params: Params = ()) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    return _run(conn, statement, params, _rowcount)


def execute_many(
    conn: Connection, statement: Statement | str, rows: Iterable[Sequence[Any]]
) -> None:
    """One statement, many parameter rows (psycopg pipelines them)."""
    _run(conn, statement, rows, _nothing, many=True)
