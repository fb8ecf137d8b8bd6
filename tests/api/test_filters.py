import asyncio
from urllib.parse import quote

import pytest

from mxkeys.errors import MatrixError
from tests.helpers import Api, assert_error

EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def _filters(user_id: str) -> str:
    return f"user/{quote(user_id)}/filter"


def test_create_and_get(api: Api) -> None:
    user = api.register()
    created = api.post(_filters(user.user_id), user, json=EXAMPLE)
    assert created.status_code == 200, created.text
    filter_id = created.json()["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    assert api.get(f"{_filters(user.user_id)}/{filter_id}", user).json() == EXAMPLE
    # Unknown keys are kept; an identical filter gets the same ID, another a new one.
    other = api.post(_filters(user.user_id), user, json={"x.custom": 1}).json()["filter_id"]
    assert other != filter_id
    again = api.post(_filters(user.user_id), user, json=EXAMPLE).json()["filter_id"]
    assert again == filter_id
    assert api.get(f"{_filters(user.user_id)}/{other}", user).json() == {"x.custom": 1}
    assert api.post(_filters(user.user_id), user, json={}).status_code == 200


def test_unknown_filter(api: Api) -> None:
    user = api.register()
    for filter_id in ("0", "12345", "abc", "-1", "99999999999999999999999"):
        assert_error(api.get(f"{_filters(user.user_id)}/{filter_id}", user), 404, "M_NOT_FOUND")


def test_other_users_filters(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    filter_id = api.post(_filters(alice.user_id), alice, json={"room": {}}).json()["filter_id"]
    assert_error(api.get(f"{_filters(alice.user_id)}/{filter_id}", bob), 403, "M_FORBIDDEN")
    assert_error(api.post(_filters(alice.user_id), bob, json={}), 403, "M_FORBIDDEN")
    # The same ID under Bob's own name is not Alice's filter.
    assert_error(api.get(f"{_filters(bob.user_id)}/{filter_id}", bob), 404, "M_NOT_FOUND")
    assert_error(api.post(_filters(alice.user_id), json={}), 401, "M_MISSING_TOKEN")


INVALID = [
    {"room": {"timeline": {"limit": "10"}}},
    {"room": {"timeline": {"limit": -1}}},
    {"room": {"timeline": {"limit": 1.5}}},
    {"room": {"timeline": {"types": "m.room.message"}}},
    {"room": {"rooms": ["not-a-room"]}},
    {"room": {"state": {"senders": ["nobody"]}}},
    {"room": {"include_leave": "yes"}},
    {"room": {"state": {"lazy_load_members": 1}}},
    {"room": []},
    {"event_format": "xml"},
    {"event_fields": [1]},
    {"presence": {"not_types": [None]}},
    {"account_data": {"limit": {}}},
    [],
]


def test_invalid_filters(api: Api) -> None:
    user = api.register()
    for body in INVALID:
        assert_error(api.post(_filters(user.user_id), user, json=body), 400, "M_BAD_JSON")


def test_resolve(server) -> None:
    hs = server.homeserver
    user_id = f"@resolve-{id(server)}:x"

    async def scenario() -> None:
        assert (await hs.filters.resolve(user_id, None)).timeline_limit == 10
        inline = await hs.filters.resolve(user_id, '{"room":{"timeline":{"limit":3}}}')
        assert inline.timeline_limit == 3
        with pytest.raises(MatrixError) as err:
            await hs.filters.resolve(user_id, "{nope")
        assert (err.value.status, err.value.errcode) == (400, "M_NOT_JSON")
        with pytest.raises(MatrixError) as err:
            await hs.filters.resolve(user_id, '{"room":{"timeline":{"limit":"x"}}}')
        assert (err.value.status, err.value.errcode) == (400, "M_BAD_JSON")
        for unknown in ("0", "abc"):
            with pytest.raises(MatrixError) as err:
                await hs.filters.resolve(user_id, unknown)
            assert (err.value.status, err.value.errcode) == (400, "M_INVALID_PARAM")

    asyncio.run(scenario())


def test_resolve_stored_filter_of_that_user_only(api: Api, server) -> None:
    hs = server.homeserver
    alice = api.register()
    bob = api.register()
    filter_id = api.post(
        _filters(alice.user_id), alice, json={"room": {"timeline": {"limit": 4}}}
    ).json()["filter_id"]

    async def scenario() -> None:
        assert (await hs.filters.resolve(alice.user_id, filter_id)).timeline_limit == 4
        with pytest.raises(MatrixError) as err:
            await hs.filters.resolve(bob.user_id, filter_id)
        assert err.value.errcode == "M_INVALID_PARAM"

    asyncio.run(scenario())
