from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from mxkeys.services.room_keys import should_replace
from mxkeys.storage import room_keys as room_keys_module
from mxkeys.storage.accounts import AccountStore
from mxkeys.storage.database import Database
from mxkeys.storage.room_keys import NewRoomKey, RoomKeyStore
from mxkeys.storage.schema import room_key_versions, room_keys, users

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_user(db: Database, user_id: str = "@a:x") -> str:
    run(AccountStore(db).create_user(user_id, None, False, 0))
    return user_id


def nk(room: str, session: str, fmi: int = 0, fc: int = 0, verified: bool = False) -> NewRoomKey:
    return NewRoomKey(room, session, fmi, fc, verified, f'{{"k":"{room}/{session}/{fmi}"}}')


def real_count(db: Database, user_id: str, version: int) -> int:
    def txn(conn: sa.Connection) -> int:
        query = sa.select(sa.func.count()).where(
            room_keys.c.user_id == user_id, room_keys.c.version == version
        )
        return conn.execute(query).scalar_one()

    return db.run_sync(txn, write=False)


def test_versions_are_allocated_per_user_and_never_reused(db: Database) -> None:
    store = RoomKeyStore(db)
    alice, bob = make_user(db, "@a:x"), make_user(db, "@b:x")
    assert run(store.create_version(alice, ALG, "{}")) == 1
    assert run(store.create_version(alice, ALG, '{"n":2}')) == 2
    assert run(store.create_version(bob, ALG, "{}")) == 1
    assert run(store.get_version(alice, None)).version == 2
    assert run(store.get_version(alice, None)).auth_data == '{"n":2}'

    assert run(store.delete_version(alice, 2)) is True
    assert run(store.delete_version(alice, 2)) is True
    assert run(store.delete_version(alice, 3)) is False
    assert run(store.get_version(alice, 2)) is None
    assert run(store.get_version(alice, None)).version == 1
    assert run(store.create_version(alice, ALG, "{}")) == 3
    assert run(store.delete_version(alice, 3)) is True
    assert run(store.delete_version(alice, 1)) is True
    assert run(store.get_version(alice, None)) is None
    assert run(store.create_version(alice, ALG, "{}")) == 4
    assert run(store.get_version(bob, None)).version == 1


def test_update_auth_data_checks_algorithm(db: Database) -> None:
    store = RoomKeyStore(db)
    user = make_user(db)
    run(store.create_version(user, ALG, '{"a":1}'))
    assert run(store.update_auth_data(user, 1, "other", '{"a":2}')) == ALG
    assert run(store.get_version(user, 1)).auth_data == '{"a":1}'
    assert run(store.update_auth_data(user, 1, ALG, '{"a":3}')) == ALG
    assert run(store.get_version(user, 1)).auth_data == '{"a":3}'
    assert run(store.update_auth_data(user, 2, ALG, "{}")) is None


def test_upload_statuses(db: Database) -> None:
    store = RoomKeyStore(db)
    user = make_user(db)
    keys = [nk("!r", "s")]
    assert run(store.upload_keys(user, 1, keys, should_replace)).status == "no_backup"
    run(store.create_version(user, ALG, "{}"))
    run(store.create_version(user, ALG, "{}"))
    old = run(store.upload_keys(user, 1, keys, should_replace))
    assert (old.status, old.current_version) == ("wrong_version", 2)
    assert run(store.upload_keys(user, 3, keys, should_replace)).status == "not_found"
    assert run(store.upload_keys(user, None, keys, should_replace)).status == "not_found"
    ok = run(store.upload_keys(user, 2, keys, should_replace))
    assert (ok.status, ok.count, ok.inserted, ok.replaced) == ("ok", 1, 1, 0)
    assert real_count(db, user, 1) == 0 and real_count(db, user, 2) == 1


def test_batched_lookup_across_chunks(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """More keys than one lookup chunk: inserts, replacements and no-ops are all counted."""
    monkeypatch.setattr(room_keys_module, "LOOKUP_CHUNK", 7)
    store = RoomKeyStore(db)
    user = make_user(db)
    version = run(store.create_version(user, ALG, "{}"))
    first = [nk(f"!r{i % 3}", f"s{i}", fmi=5) for i in range(30)]
    result = run(store.upload_keys(user, version, first, should_replace))
    assert (result.inserted, result.replaced, result.count, result.etag) == (30, 0, 30, 1)
    # Every third key is better, the rest worse or equal, plus 5 new ones.
    second = [nk(f"!r{i % 3}", f"s{i}", fmi=4 if i % 3 == 0 else 5 + i % 2) for i in range(35)]
    result = run(store.upload_keys(user, version, second, should_replace))
    assert (result.inserted, result.replaced, result.count, result.etag) == (5, 10, 35, 2)
    assert real_count(db, user, version) == 35
    result = run(store.upload_keys(user, version, second, should_replace))
    assert (result.inserted, result.replaced, result.count, result.etag) == (0, 0, 35, 2)


def test_delete_keys_counts_exactly(db: Database) -> None:
    store = RoomKeyStore(db)
    user = make_user(db)
    version = run(store.create_version(user, ALG, "{}"))
    keys = [nk(f"!r{r}", f"s{s}") for r in range(3) for s in range(4)]
    run(store.upload_keys(user, version, keys, should_replace))
    result = run(store.delete_keys(user, version, "!r0", "s1"))
    assert (result.count, result.etag) == (11, 2)
    result = run(store.delete_keys(user, version, "!r0", "s1"))
    assert (result.count, result.etag) == (11, 2)
    result = run(store.delete_keys(user, version, "!r1"))
    assert (result.count, result.etag) == (7, 3)
    assert real_count(db, user, version) == 7
    result = run(store.delete_keys(user, version))
    assert (result.count, result.etag) == (0, 4)
    assert run(store.delete_keys(user, 9)).status == "not_found"
    assert run(store.delete_keys(user, None)).status == "not_found"


def test_stream_in_batches(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(room_keys_module, "STREAM_BATCH", 4)
    store = RoomKeyStore(db)
    user = make_user(db)
    version = run(store.create_version(user, ALG, "{}"))
    keys = [
        nk(f"!r{r}", f"s{s:02}", fmi=s, verified=s % 2 == 0) for r in range(3) for s in range(5)
    ]
    run(store.upload_keys(user, version, list(reversed(keys)), should_replace))

    async def collect(room: str | None) -> list[list[Any]]:
        stream = await store.stream_keys(user, version, room)
        assert stream is not None
        return [[tuple(row) for row in batch] async for batch in stream.batches()]

    batches = run(collect(None))
    assert [len(b) for b in batches] == [4, 4, 4, 3]
    # (SQLite hands back is_verified as 0/1.)
    rows = [(*row[:4], bool(row[4]), row[5]) for batch in batches for row in batch]
    assert rows == [
        (
            k.room_id,
            k.session_id,
            k.first_message_index,
            k.forwarded_count,
            k.is_verified,
            k.session_data,
        )
        for k in keys
    ]
    assert [len(b) for b in run(collect("!r1"))] == [4, 1]
    assert run(collect("!nope")) == []
    assert run(store.stream_keys(user, 99)) is None
    # Every stream released its connection.
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_abandoned_stream_is_closed_explicitly(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(room_keys_module, "STREAM_BATCH", 2)
    store = RoomKeyStore(db)
    user = make_user(db)
    version = run(store.create_version(user, ALG, "{}"))
    run(store.upload_keys(user, version, [nk("!r", f"s{i}") for i in range(9)], should_replace))

    async def abandon() -> None:
        stream = await store.stream_keys(user, version)
        assert stream is not None
        async for _ in stream.batches():
            break
        assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        await stream.close()
        await stream.close()

    run(abandon())
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_get_key(db: Database) -> None:
    store = RoomKeyStore(db)
    user = make_user(db)
    assert run(store.get_key(user, 1, "!r", "s")) == (False, None)
    version = run(store.create_version(user, ALG, "{}"))
    assert run(store.get_key(user, version, "!r", "s")) == (True, None)
    run(store.upload_keys(user, version, [nk("!r", "s", 3, 2, True)], should_replace))
    exists, key = run(store.get_key(user, version, "!r", "s"))
    assert exists and key is not None
    assert (key.first_message_index, key.forwarded_count, key.is_verified) == (3, 2, True)
    assert key.session_data == '{"k":"!r/s/3"}'


def test_deleting_a_user_deletes_their_backups(db: Database) -> None:
    store = RoomKeyStore(db)
    user = make_user(db)
    version = run(store.create_version(user, ALG, "{}"))
    run(store.upload_keys(user, version, [nk("!r", "s")], should_replace))

    def txn(conn: sa.Connection) -> tuple[int, int]:
        conn.execute(users.delete().where(users.c.user_id == user))
        versions = conn.execute(sa.select(sa.func.count()).select_from(room_key_versions))
        keys = conn.execute(sa.select(sa.func.count()).select_from(room_keys))
        return versions.scalar_one(), keys.scalar_one()

    assert db.run_sync(txn) == (0, 0)
