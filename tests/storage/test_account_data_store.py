import asyncio
import threading

from mxkeys.storage.account_data import AccountDataStore
from mxkeys.storage.accounts import AccountStore
from mxkeys.storage.database import Database


def run(coro):
    return asyncio.run(coro)


async def _users(db: Database, *user_ids: str) -> None:
    accounts = AccountStore(db)
    for user_id in user_ids:
        assert await accounts.create_user(user_id, None, False, 0)


def test_positions_and_changes(db: Database) -> None:
    store = AccountDataStore(db)

    async def scenario() -> None:
        await _users(db, "@a:test", "@b:test")
        assert await store.current_position() == 0
        assert await store.get_changes("@a:test", 0, 0) == []
        p1 = await store.put("@a:test", None, "m.direct", '{"x":1}')
        p2 = await store.put("@a:test", "!room:test", "m.tag", '{"tags":{}}')
        p3 = await store.put("@b:test", None, "m.direct", '{"b":true}')
        assert p1 < p2 < p3 == await store.current_position()
        assert await store.get_changes("@a:test", 0, p3) == [
            (None, "m.direct", '{"x":1}'),
            ("!room:test", "m.tag", '{"tags":{}}'),
        ]
        # Half-open range: from < stream_id <= to.
        assert await store.get_changes("@a:test", p1, p3) == [
            ("!room:test", "m.tag", '{"tags":{}}')
        ]
        assert await store.get_changes("@a:test", 0, p1) == [(None, "m.direct", '{"x":1}')]
        assert await store.get_changes("@a:test", p2, p3) == []
        assert await store.get_changes("@b:test", 0, p3) == [(None, "m.direct", '{"b":true}')]
        # Global and room entries of the same type are separate.
        assert await store.get("@a:test", None, "m.tag") is None
        assert await store.get("@a:test", "!room:test", "m.tag") == '{"tags":{}}'
        assert await store.get("@b:test", "!room:test", "m.tag") is None

        # Replacing moves the entry to a new position, reported once with the new content.
        p4 = await store.put("@a:test", None, "m.direct", '{"x":2}')
        assert p4 == p3 + 1 == await store.current_position()
        assert await store.get_changes("@a:test", 0, p4) == [
            ("!room:test", "m.tag", '{"tags":{}}'),
            (None, "m.direct", '{"x":2}'),
        ]
        assert await store.get_changes("@a:test", p2, p4) == [(None, "m.direct", '{"x":2}')]
        # A reader that stopped at p3 does not see the rewrite yet.
        assert await store.get_changes("@a:test", p2, p3) == []
        assert await store.get("@a:test", None, "m.direct") == '{"x":2}'

    run(scenario())


def test_concurrent_writes_get_distinct_positions(db: Database) -> None:
    store = AccountDataStore(db)

    async def scenario() -> None:
        await _users(db, "@c:test")
        positions = await asyncio.gather(
            *(store.put("@c:test", None, f"t{i}", "{}") for i in range(20))
        )
        assert sorted(positions) == list(range(1, 21))
        changes = await store.get_changes("@c:test", 0, await store.current_position())
        assert len(changes) == 20

    run(scenario())


def test_positions_commit_in_allocation_order(db: Database) -> None:
    """A writer holding position N makes the next writer wait, and readers never see N
    before it commits: /sync cannot step past a row that commits late."""
    store = AccountDataStore(db)
    run(_users(db, "@o:test"))
    result: dict[str, int] = {}

    def second_writer() -> None:
        result["pos"] = db.run_sync(lambda c: store.put_in(c, "@o:test", None, "b", "{}"))

    with db.engine.connect() as raw:
        # A write transaction as `Database.write` opens it (BEGIN IMMEDIATE on SQLite, where
        # the database lock serializes writers; the counter's row lock on PostgreSQL).
        conn = raw.execution_options(mxkeys_write=True)
        tx = conn.begin()
        first = store.put_in(conn, "@o:test", None, "a", "{}")
        writer = threading.Thread(target=second_writer)
        writer.start()
        writer.join(0.3)
        assert writer.is_alive()
        assert run(store.current_position()) == first - 1
        assert run(store.get_changes("@o:test", 0, first)) == []
        tx.commit()
    writer.join(10)
    assert result["pos"] == first + 1
    assert [t for _, t, _ in run(store.get_changes("@o:test", 0, first + 1))] == ["a", "b"]
