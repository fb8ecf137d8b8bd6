import asyncio

from mxkeys.ids import hash_token
from mxkeys.storage.accounts import AccountStore, NewLogin
from mxkeys.storage.database import Database


def run(coro):
    return asyncio.run(coro)


def test_create_user_once(db: Database) -> None:
    store = AccountStore(db)
    assert run(store.create_user("@a:x", "hash", False, 1)) is True
    assert run(store.create_user("@a:x", "other", True, 2)) is False
    assert run(store.get_password_hash("@a:x")) == (True, "hash")
    assert run(store.get_password_hash("@b:x")) == (False, None)


def test_login_token_and_device_cascade(db: Database) -> None:
    store = AccountStore(db)
    login = NewLogin("DEV1", "phone", hash_token("t1"))
    run(store.create_user("@a:x", None, False, 1, login))
    run(store.add_login("@a:x", NewLogin("DEV1", "ignored", hash_token("t2")), 5))
    owner = run(store.get_token_owner(hash_token("t2")))
    assert owner is not None and (owner.user_id, owner.device_id) == ("@a:x", "DEV1")
    devices = run(store.list_devices("@a:x"))
    assert [(d.device_id, d.display_name) for d in devices] == [("DEV1", "phone")]
    assert run(store.delete_devices("@a:x", ["DEV1", "NOPE"])) == ["DEV1"]
    assert run(store.get_token_owner(hash_token("t1"))) is None
    assert run(store.get_token_owner(hash_token("t2"))) is None


def test_delete_all_devices_only_for_that_user(db: Database) -> None:
    store = AccountStore(db)
    run(store.create_user("@a:x", None, False, 1, NewLogin("A1", None, hash_token("a1"))))
    run(store.create_user("@b:x", None, False, 1, NewLogin("B1", None, hash_token("b1"))))
    run(store.add_login("@a:x", NewLogin("A2", None, hash_token("a2")), 2))
    assert run(store.delete_devices("@a:x", None)) == ["A1", "A2"]
    assert run(store.get_token_owner(hash_token("b1"))) is not None


def test_record_token_use(db: Database) -> None:
    store = AccountStore(db)
    run(store.create_user("@a:x", None, False, 1, NewLogin("A1", None, hash_token("a1"))))
    run(store.record_token_use(hash_token("a1"), "@a:x", "A1", 99, "127.0.0.1", "ua"))
    device = run(store.get_device("@a:x", "A1"))
    assert device is not None and device.last_seen_ts == 99 and device.last_seen_ip == "127.0.0.1"
    owner = run(store.get_token_owner(hash_token("a1")))
    assert owner is not None and owner.last_seen_ts == 99


def test_revocation_wins_over_cached_and_racing_lookups(db: Database) -> None:
    """(On SQLite lookups are cached: a deleted device's tokens must stop working at once, and
    a lookup that read the row just before the deletion must not cache it afterwards.)"""
    store = AccountStore(db)
    tokens = {d: hash_token(f"tok-{d}") for d in ("D1", "D2", "D3")}
    run(store.create_user("@a:x", None, False, 1, NewLogin("D1", None, tokens["D1"])))
    for device in ("D2", "D3"):
        run(store.add_login("@a:x", NewLogin(device, None, tokens[device]), 2))
    for token in tokens.values():  # looked up, so cached where there is a cache
        assert run(store.get_token_owner(token)) is not None
    run(store.record_token_use(tokens["D1"], "@a:x", "D1", 99, None, None))
    assert run(store.get_token_owner(tokens["D1"])).last_seen_ts == 99

    assert run(store.delete_devices("@a:x", ["D1"])) == ["D1"]
    assert run(store.get_token_owner(tokens["D1"])) is None
    assert run(store.get_token_owner(tokens["D2"])) is not None

    fresh = AccountStore(db)  # nothing cached yet

    class LateReads:
        """The database, but a read's answer arrives only after the deletion committed."""

        def __init__(self) -> None:
            self.deleted = asyncio.Event()

        async def read(self, fn):
            result = await db.read(fn)
            await self.deleted.wait()
            return result

        async def write(self, fn):
            return await db.write(fn)

    async def lookup_racing_a_deletion() -> None:
        late = LateReads()
        fresh.db = late  # type: ignore[assignment]
        lookup = asyncio.ensure_future(fresh.get_token_owner(tokens["D2"]))
        await asyncio.sleep(0.2)  # the lookup has read the row (still there)
        await fresh.delete_devices("@a:x", None)
        late.deleted.set()
        assert await lookup is not None  # it read the row before the deletion
        fresh.db = db

    run(lookup_racing_a_deletion())
    assert run(fresh.get_token_owner(tokens["D2"])) is None
    assert run(fresh.get_token_owner(tokens["D3"])) is None


def test_new_tokens_are_cached_at_once(db: Database, monkeypatch) -> None:
    """(SQLite) The token a registration or login creates is cached when it commits: the
    client's first request with it reads nothing. PostgreSQL asks the database every time."""
    store = AccountStore(db)
    reads = []
    real_read = db.read

    async def counting_read(fn):
        reads.append(fn)
        return await real_read(fn)

    monkeypatch.setattr(db, "read", counting_read)
    run(store.create_user("@admin:x", None, True, 1, NewLogin("A1", None, hash_token("a1"))))
    run(store.add_login("@admin:x", NewLogin("A2", None, hash_token("a2")), 7))
    run(store.create_user("@b:x", None, False, 1, NewLogin("B1", None, hash_token("b1"))))
    owners = [run(store.get_token_owner(hash_token(t))) for t in ("a1", "a2", "b1")]
    assert [(o.user_id, o.device_id, o.is_admin, o.last_seen_ts) for o in owners] == [
        ("@admin:x", "A1", True, 1),
        ("@admin:x", "A2", True, 7),
        ("@b:x", "B1", False, 1),
    ]
    assert len(reads) == (0 if db.is_sqlite else 3)
    # Revocation still wins over the cache.
    assert run(store.delete_devices("@admin:x", ["A2"])) == ["A2"]
    assert run(store.get_token_owner(hash_token("a2"))) is None
    assert run(store.get_token_owner(hash_token("a1"))) is not None
