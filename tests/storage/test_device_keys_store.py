"""DeviceKeysStore on both backends, including the device-list change stream."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from mxkeys.services.keys import same_one_time_key
from mxkeys.storage.accounts import AccountStore, NewLogin
from mxkeys.storage.database import Database
from mxkeys.storage.device_keys import (
    CrossSigningKey,
    DeviceKeysStore,
    NewKey,
    OneTimeKeyConflict,
    OneTimeKeyLimit,
    OneTimeKeys,
    Signature,
)

T = TypeVar("T")
ALG = "signed_curve25519"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def key(key_id: str, value: str = "v", algorithm: str = ALG) -> NewKey:
    return NewKey(algorithm, key_id, json.dumps({"key": value, "signatures": {}}))


@pytest.fixture
def stores(db: Database) -> tuple[AccountStore, DeviceKeysStore]:
    accounts = AccountStore(db)
    for user in ("@a:hs", "@b:hs"):
        login = NewLogin("D1", None, f"hash-{user}-1")
        run(accounts.create_user(user, None, False, 1, login))
        run(accounts.add_login(user, NewLogin("D2", None, f"hash-{user}-2"), 2))
    return accounts, DeviceKeysStore(db)


def upload(
    store: DeviceKeysStore,
    user: str,
    device: str,
    dk: str | None = None,
    otks: list[NewKey] | None = None,
    fallbacks: list[NewKey] | None = None,
    cap: int = 100,
) -> dict[str, int]:
    return run(
        store.upload_keys(
            user, device, dk, OneTimeKeys.of(otks or []), fallbacks or [], cap, same_one_time_key
        )
    )


def test_upload_counts_conflicts_and_cap(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    _, store = stores
    assert upload(store, "@a:hs", "D1", otks=[key("1"), key("2")]) == {ALG: 2}
    assert upload(store, "@a:hs", "D1", otks=[key("1"), key("3", algorithm="x")]) == {
        ALG: 2,
        "x": 1,
    }
    with pytest.raises(OneTimeKeyConflict) as conflict:
        upload(store, "@a:hs", "D1", '{"dk":1}', otks=[key("4"), key("2", "other")])
    assert conflict.value.key_name == f"{ALG}:2"
    with pytest.raises(OneTimeKeyLimit):
        upload(store, "@a:hs", "D1", otks=[key("5"), key("6")], cap=3)
    # Both failures rolled back entirely: no key 4/5/6, no device keys.
    assert run(store.count_one_time_keys("@a:hs", "D1")) == {ALG: 2, "x": 1}
    result = run(store.query_keys("@a:hs", ["@a:hs"], []))
    assert result.devices == []
    assert run(store.count_one_time_keys("@a:hs", "D2")) == {}


def test_claim_order_fallback_and_used_flag(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    _, store = stores
    upload(store, "@a:hs", "D1", otks=[key("1")])
    upload(store, "@a:hs", "D1", otks=[key("2")], fallbacks=[key("fb")])
    assert run(store.unused_fallback_key_types("@a:hs", "D1")) == [ALG]
    wanted = [("@a:hs", "D1", ALG), ("@a:hs", "D2", ALG), ("@b:hs", "D1", ALG)]
    first = run(store.claim_keys(wanted))
    assert [(c.device_id, c.key_id, c.fallback) for c in first] == [("D1", "1", False)]
    assert [c.key_id for c in run(store.claim_keys(wanted))] == ["2"]
    assert run(store.unused_fallback_key_types("@a:hs", "D1")) == [ALG]
    for _ in range(2):
        claimed = run(store.claim_keys(wanted))
        assert [(c.key_id, c.fallback) for c in claimed] == [("fb", True)]
    assert run(store.unused_fallback_key_types("@a:hs", "D1")) == []
    # Re-uploading the same fallback key keeps it used; a new one is unused.
    upload(store, "@a:hs", "D1", fallbacks=[key("fb")])
    assert run(store.unused_fallback_key_types("@a:hs", "D1")) == []
    upload(store, "@a:hs", "D1", fallbacks=[key("fb2", "new")])
    assert run(store.unused_fallback_key_types("@a:hs", "D1")) == [ALG]
    assert [c.key_id for c in run(store.claim_keys(wanted))] == ["fb2"]
    assert run(store.claim_keys([])) == []


def test_claims_go_in_upload_order(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    """Oldest first (MSC4225), not in key-ID order: IDs as clients make them (base64 of a
    counter) stop sorting in upload order from the 209th key on."""
    _, store = stores
    ids = [base64.b64encode(n.to_bytes(4, "big")).decode().rstrip("=") for n in range(300)]
    assert sorted(ids) != ids
    for start in range(0, 300, 50):
        upload(store, "@a:hs", "D1", otks=[key(i) for i in ids[start : start + 50]], cap=1000)
    # A repeated upload of stored keys (a retry) adds nothing and moves nothing.
    assert upload(store, "@a:hs", "D1", otks=[key(ids[0]), key(ids[299])], cap=1000) == {
        ALG: 300
    }
    claimed = [
        c.key_id for _ in range(300) for c in run(store.claim_keys([("@a:hs", "D1", ALG)]))
    ]
    assert claimed == ids
    # Emptied, the device numbers its next keys afresh and still hands them out in order.
    upload(store, "@a:hs", "D1", otks=[key("later"), key("earlier")])
    assert [c.key_id for c in run(store.claim_keys([("@a:hs", "D1", ALG)]))] == ["later"]


def _rows(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_claimed_keys_never_come_back(
    db: Database, stores: tuple[AccountStore, DeviceKeysStore]
) -> None:
    """A claimed key is never handed out or counted again, whether its row is deleted at once
    (PostgreSQL) or left below the device's claim mark until the device's next upload or
    housekeeping (SQLite); its key ID may be uploaded again as a new key, as after a delete."""
    accounts, store = stores
    a1 = ("@a:hs", "D1", ALG)
    upload(store, "@a:hs", "D1", otks=[key("1"), key("2"), key("3")])
    upload(store, "@a:hs", "D2", otks=[key("1"), key("2")])
    both = [a1, ("@a:hs", "D2", ALG)]
    assert {c.device_id: c.key_id for c in run(store.claim_keys(both))} == {"D1": "1", "D2": "1"}
    assert run(store.count_one_time_keys("@a:hs", "D1")) == {ALG: 2}
    # The claimed "1" again, same content: a new key, behind the ones waiting.
    assert upload(store, "@a:hs", "D1", otks=[key("1")]) == {ALG: 3}
    assert [c.key_id for c in run(store.claim_keys([a1]))] == ["2"]
    assert [c.key_id for c in run(store.claim_keys([a1]))] == ["3"]
    assert run(store.count_one_time_keys("@a:hs", "D1")) == {ALG: 1}
    # Housekeeping deletes what claims left (on SQLite: D1's "2" and "3", D2's "1").
    stored = _rows(db, "one_time_keys")
    deleted = run(store.delete_claimed_keys(batch=1))
    assert (deleted, stored) == ((3, 5) if db.is_sqlite else (0, 2))
    assert _rows(db, "one_time_keys") == 2 and _rows(db, "one_time_key_claims") == 0
    assert run(store.count_one_time_keys("@a:hs", "D1")) == {ALG: 1}
    assert {c.device_id: c.key_id for c in run(store.claim_keys(both))} == {"D1": "1", "D2": "2"}
    assert run(store.claim_keys([a1])) == []
    # A deleted device takes its marks with it.
    run(accounts.delete_devices("@a:hs", ["D1", "D2"]))
    assert _rows(db, "one_time_key_claims") == 0 and _rows(db, "one_time_keys") == 0


def test_query_visibility(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    _, store = stores
    upload(store, "@a:hs", "D1", '{"a":1}')
    upload(store, "@b:hs", "D2", '{"b":2}')
    keys = [CrossSigningKey("@a:hs", u, f"pub-{u}", "{}") for u in ("master", "self_signing")]
    keys.append(CrossSigningKey("@a:hs", "user_signing", "pub-usk", "{}"))
    assert run(store.set_cross_signing_keys("@a:hs", keys, None))
    assert not run(store.set_cross_signing_keys("@a:hs", keys, None))  # master changed since
    run(
        store.store_signatures(
            [
                Signature("@a:hs", "D1", "@a:hs", "ed25519:pub-self_signing", "s1"),
                Signature("@b:hs", "pub-b", "@a:hs", "ed25519:pub-usk", "s2"),
            ],
            ["@a:hs"],
        )
    )
    as_b = run(store.query_keys("@b:hs", ["@a:hs"], [("@b:hs", "D2"), ("@b:hs", "D1")]))
    assert {(d.user_id, d.device_id) for d in as_b.devices} == {("@a:hs", "D1"), ("@b:hs", "D2")}
    assert sorted(as_b.existing_users) == ["@a:hs", "@b:hs"]
    assert {k.usage for k in as_b.cross_signing_keys} == {"master", "self_signing"}
    # B sees A's self-signature; not A's user-signing signature on B's master key.
    assert [s.signature for s in as_b.signatures] == ["s1"]
    as_a = run(store.query_keys("@a:hs", ["@a:hs", "@b:hs"], []))
    assert sorted(s.signature for s in as_a.signatures) == ["s1", "s2"]
    assert {k.usage for k in as_a.cross_signing_keys} == {"master", "self_signing", "user_signing"}


def test_device_list_stream(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    accounts, store = stores
    start = run(store.current_device_list_position())
    # Registration and the second login recorded a change each for both users.
    changes = run(store.get_device_list_changes(0, start))
    assert [(c.user_id, c.device_id) for c in changes] == [
        ("@a:hs", "D1"),
        ("@a:hs", "D2"),
        ("@b:hs", "D1"),
        ("@b:hs", "D2"),
    ]
    assert [c.stream_id for c in changes] == sorted({c.stream_id for c in changes})

    upload(store, "@a:hs", "D1", '{"a":1}', otks=[key("1")])
    upload(store, "@a:hs", "D1", '{"a":1}')  # unchanged: no new change
    upload(store, "@a:hs", "D1", otks=[key("2")])  # one-time keys: not a device-list change
    run(
        store.set_cross_signing_keys("@b:hs", [CrossSigningKey("@b:hs", "master", "p", "{}")], None)
    )
    run(accounts.delete_devices("@a:hs", ["D2"]))
    run(accounts.set_device_display_name("@b:hs", "D1", "phone"))
    run(accounts.add_login("@a:hs", NewLogin("D1", None, "hash-again"), 3))  # existing device
    end = run(store.current_device_list_position())
    changes = run(store.get_device_list_changes(start, end))
    assert [(c.user_id, c.device_id) for c in changes] == [
        ("@a:hs", "D1"),
        ("@b:hs", None),
        ("@a:hs", "D2"),
        ("@b:hs", "D1"),
    ]
    assert changes[-1].stream_id == end
    only_a = run(store.get_device_list_changes(start, end, ["@a:hs"]))
    assert [c.device_id for c in only_a] == ["D1", "D2"]
    assert run(store.get_device_list_changes(start, end, [])) == []
    assert run(store.get_device_list_changes(end, end + 100)) == []


def test_deleting_a_device_deletes_its_keys(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    accounts, store = stores
    upload(store, "@a:hs", "D2", '{"a":1}', otks=[key("1")], fallbacks=[key("fb")])
    run(store.store_signatures([Signature("@a:hs", "D2", "@a:hs", "ed25519:x", "s")], []))
    run(accounts.delete_devices("@a:hs", ["D2"]))
    # The same device ID again starts empty (keys and signatures went with the device).
    run(accounts.add_login("@a:hs", NewLogin("D2", None, "hash-d2-again"), 4))
    assert run(store.count_one_time_keys("@a:hs", "D2")) == {}
    assert run(store.claim_keys([("@a:hs", "D2", ALG)])) == []
    upload(store, "@a:hs", "D2", '{"a":2}')
    assert run(store.query_keys("@a:hs", ["@a:hs"], [])).signatures == []


def test_concurrent_uploads_fail_alone(stores: tuple[AccountStore, DeviceKeysStore]) -> None:
    """Uploads that arrive together may share a transaction (group commit on SQLite); one
    that fails must not take the others down, nor leave anything behind."""
    _, store = stores
    upload(store, "@b:hs", "D1", otks=[key("x", "old")])
    otks = OneTimeKeys.of

    async def together() -> list[object]:
        return await asyncio.gather(
            store.upload_keys(
                "@a:hs", "D1", '{"a":1}', otks([key("1")]), [], 100, same_one_time_key
            ),
            store.upload_keys(
                "@b:hs", "D1", '{"b":1}', otks([key("y"), key("x", "new")]), [], 100,
                same_one_time_key,
            ),
            store.upload_keys(
                "@a:hs", "D2", None, otks([key("2"), key("3")]), [], 100, same_one_time_key
            ),
            return_exceptions=True,
        )

    first, second, third = run(together())
    assert first == {ALG: 1}
    assert isinstance(second, OneTimeKeyConflict)
    assert third == {ALG: 2}
    assert run(store.count_one_time_keys("@b:hs", "D1")) == {ALG: 1}
    devices = run(store.query_keys("@a:hs", ["@a:hs", "@b:hs"], [])).devices
    assert [(d.user_id, d.key_json) for d in devices] == [("@a:hs", '{"a":1}')]
