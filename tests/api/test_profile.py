from urllib.parse import quote

from tests.helpers import Api, assert_error


def _p(user_id: str, field: str | None = None) -> str:
    base = f"profile/{quote(user_id)}"
    return base if field is None else f"{base}/{quote(field)}"


def test_displayname_defaults_to_localpart(api: Api) -> None:
    user = api.register()
    assert api.get(_p(user.user_id, "displayname")).json() == {"displayname": user.localpart}
    assert api.get(_p(user.user_id)).json() == {"displayname": user.localpart}
    assert_error(api.get(_p(user.user_id, "avatar_url")), 404, "M_NOT_FOUND")


def test_set_get_and_clear(api: Api) -> None:
    user = api.register()
    assert (
        api.put(_p(user.user_id, "displayname"), user, json={"displayname": "Alice ✨"}).json()
        == {}
    )
    assert (
        api.put(
            _p(user.user_id, "avatar_url"), user, json={"avatar_url": "mxc://example.org/abc"}
        ).status_code
        == 200
    )
    assert (
        api.put(_p(user.user_id, "m.tz"), user, json={"m.tz": "Europe/London"}).status_code == 200
    )
    assert (
        api.put(
            _p(user.user_id, "org.example.pets"), user, json={"org.example.pets": ["cat", {"n": 2}]}
        ).status_code
        == 200
    )
    assert api.get(_p(user.user_id), user).json() == {
        "displayname": "Alice ✨",
        "avatar_url": "mxc://example.org/abc",
        "m.tz": "Europe/London",
        "org.example.pets": ["cat", {"n": 2}],
    }
    assert api.get(_p(user.user_id, "org.example.pets")).json() == {
        "org.example.pets": ["cat", {"n": 2}]
    }
    # Legacy r0 and unauthenticated lookups work.
    assert api.get(f"/_matrix/client/r0/{_p(user.user_id, 'displayname')}").json() == {
        "displayname": "Alice ✨"
    }
    # "" removes display name / avatar; DELETE removes any field.
    assert (
        api.put(_p(user.user_id, "displayname"), user, json={"displayname": ""}).status_code == 200
    )
    assert_error(api.get(_p(user.user_id, "displayname")), 404, "M_NOT_FOUND")
    assert api.delete(_p(user.user_id, "org.example.pets"), user).json() == {}
    assert api.delete(_p(user.user_id, "org.example.pets"), user).status_code == 200
    assert api.put(_p(user.user_id, "avatar_url"), user, json={"avatar_url": ""}).status_code == 200
    assert api.delete(_p(user.user_id, "m.tz"), user).status_code == 200
    assert_error(api.get(_p(user.user_id)), 404, "M_NOT_FOUND")


def test_only_owner_may_change(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    assert_error(
        api.put(_p(alice.user_id, "displayname"), bob, json={"displayname": "x"}),
        403,
        "M_FORBIDDEN",
    )
    assert_error(api.delete(_p(alice.user_id, "displayname"), bob), 403, "M_FORBIDDEN")
    assert_error(
        api.put(_p(alice.user_id, "displayname"), json={"displayname": "x"}), 401, "M_MISSING_TOKEN"
    )
    assert api.get(_p(alice.user_id, "displayname")).json() == {"displayname": alice.localpart}
    # Bob can read Alice's profile.
    assert api.get(_p(alice.user_id), bob).json() == {"displayname": alice.localpart}


def test_unknown_and_remote_users(api: Api) -> None:
    user = api.register()
    server_name = user.user_id.split(":", 1)[1]
    assert_error(api.get(_p(f"@nobody-here:{server_name}")), 404, "M_NOT_FOUND")
    assert_error(api.get(_p(f"@nobody-here:{server_name}", "displayname")), 404, "M_NOT_FOUND")
    assert_error(api.get(_p(f"@{user.localpart}:elsewhere.example")), 404, "M_NOT_FOUND")
    assert_error(api.get(_p("not-a-user-id")), 404, "M_NOT_FOUND")


def test_validation(api: Api) -> None:
    user = api.register()
    dn = _p(user.user_id, "displayname")
    assert_error(api.put(dn, user, json={}), 400, "M_MISSING_PARAM")
    assert_error(api.put(dn, user, json={"avatar_url": "mxc://x/y"}), 400, "M_MISSING_PARAM")
    assert_error(api.put(dn, user, json={"displayname": 5}), 400, "M_BAD_JSON")
    assert_error(api.put(dn, user, json={"displayname": None}), 400, "M_BAD_JSON")
    assert_error(api.put(dn, user, json=["displayname"]), 400, "M_BAD_JSON")
    assert_error(api.put(dn, user, json={"displayname": "x" * 257}), 400, "M_INVALID_PARAM")
    assert api.put(dn, user, json={"displayname": "x" * 256}).status_code == 200
    av = _p(user.user_id, "avatar_url")
    assert_error(
        api.put(av, user, json={"avatar_url": "mxc://x/" + "y" * 1000}), 400, "M_INVALID_PARAM"
    )
    assert_error(api.put(av, user, json={"avatar_url": {"url": 1}}), 400, "M_BAD_JSON")
    assert_error(api.put(_p(user.user_id, "m.tz"), user, json={"m.tz": 1}), 400, "M_BAD_JSON")
    for bad_key in ("Bad", "nodots", "org.example.", "1org.example", "org.Example.x"):
        assert_error(
            api.put(_p(user.user_id, bad_key), user, json={bad_key: 1}), 400, "M_INVALID_PARAM"
        )
        assert_error(api.get(_p(user.user_id, bad_key)), 400, "M_INVALID_PARAM")
    long_key = "org." + "a" * 252
    assert_error(
        api.put(_p(user.user_id, long_key), user, json={long_key: 1}), 400, "M_KEY_TOO_LARGE"
    )
    # The whole profile stays under 64 KiB.
    big = "x" * 40000
    assert (
        api.put(_p(user.user_id, "org.example.a"), user, json={"org.example.a": big}).status_code
        == 200
    )
    assert_error(
        api.put(_p(user.user_id, "org.example.b"), user, json={"org.example.b": big}),
        400,
        "M_PROFILE_TOO_LARGE",
    )
    assert_error(api.get(_p(user.user_id, "org.example.b")), 404, "M_NOT_FOUND")
    # Custom fields may hold null, stored as null.
    assert (
        api.put(_p(user.user_id, "org.example.n"), user, json={"org.example.n": None}).status_code
        == 200
    )
    assert api.get(_p(user.user_id, "org.example.n")).json() == {"org.example.n": None}


def test_listeners(api: Api, server) -> None:
    import asyncio

    hs = server.homeserver
    calls: list[tuple] = []

    async def listener(user_id: str, displayname: str | None, avatar_url: str | None) -> None:
        calls.append((user_id, displayname, avatar_url))

    async def failing(user_id: str, displayname: str | None, avatar_url: str | None) -> None:
        raise RuntimeError("boom")

    hs.profile.add_listener(failing)
    hs.profile.add_listener(listener)
    try:
        user = api.register()
        assert calls == []  # registration sets the default without notifying
        api.put(_p(user.user_id, "displayname"), user, json={"displayname": "New"})
        api.put(_p(user.user_id, "displayname"), user, json={"displayname": "New"})  # no change
        api.put(_p(user.user_id, "org.example.x"), user, json={"org.example.x": 1})  # not watched
        api.put(_p(user.user_id, "avatar_url"), user, json={"avatar_url": "mxc://a/b"})
        api.delete(_p(user.user_id, "displayname"), user)
        assert calls == [
            (user.user_id, "New", None),
            (user.user_id, "New", "mxc://a/b"),
            (user.user_id, None, "mxc://a/b"),
        ]
        assert asyncio.run(hs.profile.get_profile(user.user_id)) == (None, "mxc://a/b")
        assert asyncio.run(hs.profile.get_profile("@nobody:nowhere")) == (None, None)
    finally:
        hs.profile._listeners.remove(listener)
        hs.profile._listeners.remove(failing)
