"""`mxkeys.storage.sql`: driver-level statements inside the storage layer's transactions."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.sql import Statement, execute, execute_many, fetch_all, fetch_one

_INSERT = Statement("INSERT INTO stream_positions (stream, position) VALUES (?, ?)")
_BY_NAME = Statement(
    "SELECT stream, position FROM stream_positions WHERE position >= :low AND stream != :skip "
    "ORDER BY stream"
)
_BUMP = Statement("UPDATE stream_positions SET position = position + ? WHERE stream LIKE ?")


def test_placeholders_per_dialect() -> None:
    statement = Statement("SELECT a FROM t WHERE b = ? AND c = :name AND d = CAST(:x AS text)")
    assert statement.sqlite == "SELECT a FROM t WHERE b = ? AND c = :name AND d = CAST(:x AS text)"
    assert statement.postgresql == (
        "SELECT a FROM t WHERE b = %s AND c = %(name)s AND d = CAST(%(x)s AS text)"
    )
    # A text of PostgreSQL's own keeps its casts; JSON paths and '::' are not placeholders.
    own = Statement("SELECT json_extract(v, '$[0]')", "SELECT CAST(:a AS text[]), 1::bigint")
    assert own.sqlite == "SELECT json_extract(v, '$[0]')"
    assert own.postgresql == "SELECT CAST(%(a)s AS text[]), 1::bigint"
    with pytest.raises(AssertionError):
        Statement("SELECT 'a%'")


def test_statements_in_a_transaction(db: Database) -> None:
    def write(conn: Connection) -> int:
        execute_many(conn, _INSERT, [("t_a", 1), ("t_b", 5), ("t_c", 9)])
        return execute(conn, _BUMP, (10, "t_%"))

    assert asyncio.run(db.write(write)) == 3

    def read(conn: Connection) -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
        rows = fetch_all(conn, _BY_NAME, {"low": 15, "skip": "t_c"})
        return [tuple(r) for r in rows], fetch_one(conn, _BY_NAME, {"low": 100, "skip": ""})

    rows, none = asyncio.run(db.read(read))
    assert rows == [("t_b", 15)]
    assert none is None


def test_a_failed_transaction_rolls_back_driver_statements(db: Database) -> None:
    def write(conn: Connection) -> None:
        execute(conn, _INSERT, ("t_x", 1))
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        asyncio.run(db.write(write))
    found = asyncio.run(db.read(lambda conn: fetch_all(conn, _BY_NAME, {"low": 0, "skip": ""})))
    assert [r[0] for r in found if r[0] == "t_x"] == []
