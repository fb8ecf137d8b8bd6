import time
from urllib.parse import quote

from tests.helpers import Api, assert_error


def _global(user_id: str, data_type: str) -> str:
    return f"user/{quote(user_id)}/account_data/{quote(data_type)}"


def _room(user_id: str, room_id: str, data_type: str) -> str:
    return f"user/{quote(user_id)}/rooms/{quote(room_id)}/account_data/{quote(data_type)}"


def test_global_round_trip_and_replace(api: Api) -> None:
    user = api.register()
    path = _global(user.user_id, "org.example.config")
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")
    assert api.put(path, user, json={"a": [1, {"b": None}], "é": "ü"}).json() == {}
    assert api.get(path, user).json() == {"a": [1, {"b": None}], "é": "ü"}
    assert api.put(path, user, json={}).status_code == 200
    assert api.get(path, user).json() == {}
    # The legacy prefix serves the same data.
    legacy = api.get(f"/_matrix/client/r0/{path}", user)
    assert legacy.status_code == 200 and legacy.json() == {}


def test_room_round_trip_is_separate_from_global(api: Api) -> None:
    user = api.register()
    room = "!abc:example.org"
    path = _room(user.user_id, room, "m.tag")
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")
    assert api.put(path, user, json={"tags": {"u.work": {"order": 0.5}}}).status_code == 200
    assert api.get(path, user).json() == {"tags": {"u.work": {"order": 0.5}}}
    assert_error(api.get(_global(user.user_id, "m.tag"), user), 404, "M_NOT_FOUND")
    assert_error(
        api.get(_room(user.user_id, "!other:example.org", "m.tag"), user), 404, "M_NOT_FOUND"
    )
    # Room version 12 room IDs have no server part.
    v12 = _room(user.user_id, "!Rmr0s7XkBZ1G2Kq0N5QYn8Jx1VH9dDtJbqWcLhQh0dM", "m.tag")
    assert api.put(v12, user, json={"tags": {}}).status_code == 200


def test_only_the_owner(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    path = _global(alice.user_id, "org.example.secret")
    assert api.put(path, alice, json={"s": 1}).status_code == 200
    assert_error(api.get(path, bob), 403, "M_FORBIDDEN")
    assert_error(api.put(path, bob, json={"s": 2}), 403, "M_FORBIDDEN")
    room_path = _room(alice.user_id, "!r:example.org", "m.tag")
    assert_error(api.put(room_path, bob, json={}), 403, "M_FORBIDDEN")
    assert_error(api.get(room_path, bob), 403, "M_FORBIDDEN")
    assert api.get(path, alice).json() == {"s": 1}
    # Bob's own data of the same type is his.
    assert_error(api.get(_global(bob.user_id, "org.example.secret"), bob), 404, "M_NOT_FOUND")
    assert_error(api.get(path), 401, "M_MISSING_TOKEN")


def test_server_managed_types_refused(api: Api) -> None:
    user = api.register()
    for data_type in ("m.fully_read", "m.push_rules"):
        assert_error(api.put(_global(user.user_id, data_type), user, json={}), 405, "M_BAD_JSON")
        assert_error(
            api.put(_room(user.user_id, "!r:example.org", data_type), user, json={}),
            405,
            "M_BAD_JSON",
        )
    assert_error(
        api.get(_room(user.user_id, "!r:example.org", "m.fully_read"), user), 404, "M_NOT_FOUND"
    )
    # m.push_rules can be read: the user's current rule set.
    rules = api.get(_global(user.user_id, "m.push_rules"), user).json()
    assert rules["global"]["override"][0]["rule_id"] == ".m.rule.master"


def test_bad_bodies_and_room_ids(api: Api) -> None:
    user = api.register()
    path = _global(user.user_id, "org.example.x")
    assert_error(api.put(path, user, json=[1, 2]), 400, "M_BAD_JSON")
    assert_error(api.put(path, user, json="text"), 400, "M_BAD_JSON")
    assert_error(api.put(path, user, content=b"{not json"), 400, "M_NOT_JSON")
    for bad_room in ("@notaroom:example.org", "room", "!"):
        assert_error(
            api.put(_room(user.user_id, bad_room, "m.tag"), user, json={}), 400, "M_INVALID_PARAM"
        )
        assert_error(api.get(_room(user.user_id, bad_room, "m.tag"), user), 400, "M_INVALID_PARAM")
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")


def test_writes_move_the_stream_and_wake_sync(api: Api, server) -> None:
    import asyncio

    hs = server.homeserver
    user = api.register()
    other = api.register()

    def settled(user_id: str) -> int:
        # A registration's device-list wake-up lands shortly after its response (it looks up
        # who shares a room first): take the counters after it.
        deadline = time.monotonic() + 5
        while hs.notifier.counter(user_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return hs.notifier.counter(user_id)

    before = settled(user.user_id)
    other_before = settled(other.user_id)

    async def position() -> int:
        return await hs.account_data.current_position()

    start = asyncio.run(position())
    assert api.put(_global(user.user_id, "a.b"), user, json={"n": 1}).status_code == 200
    assert api.put(_room(user.user_id, "!r:x", "a.c"), user, json={"n": 2}).status_code == 200
    assert hs.notifier.counter(user.user_id) == before + 2
    assert hs.notifier.counter(other.user_id) == other_before

    async def changes() -> list:
        # (asyncio.run: a fresh loop; the store only needs its thread pool)
        return await hs.account_data.get_changes(user.user_id, start, await position())

    assert asyncio.run(changes()) == [(None, "a.b", '{"n":1}'), ("!r:x", "a.c", '{"n":2}')]
