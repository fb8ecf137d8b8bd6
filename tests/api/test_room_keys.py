"""Server-side key backups over HTTP: `/room_keys/version` and `/room_keys/keys`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import Api, User, assert_error

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH_DATA = {"public_key": "abcdefg", "signatures": {"@a:b": {"ed25519:X": "sig"}}}
ROOM = "!room:example.org"
# Real megolm session IDs are unpadded base64 and contain "/" and "+".
SESSION = "o+21hSjP+mgEmcfdslPsQdvzWnkdt0Wyo00Kp/+R8Kc"


def key(fmi: int = 0, fc: int = 0, verified: bool = False, data: Any = None) -> dict[str, Any]:
    return {
        "first_message_index": fmi,
        "forwarded_count": fc,
        "is_verified": verified,
        "session_data": data if data is not None else {"ciphertext": f"c-{fmi}-{fc}-{verified}"},
    }


def enc(value: str) -> str:
    return quote(value, safe="")


def create_backup(api: Api, user: User, auth_data: dict[str, Any] | None = None) -> str:
    response = api.post(
        "room_keys/version",
        user,
        json={"algorithm": ALGORITHM, "auth_data": auth_data or AUTH_DATA},
    )
    assert response.status_code == 200, response.text
    version = response.json()["version"]
    assert isinstance(version, str)
    return version


def put_session(api: Api, user: User, version: str, room: str, session: str, body: Any) -> Any:
    return api.put(
        f"room_keys/keys/{enc(room)}/{enc(session)}", user, json=body, params={"version": version}
    )


def put_all(api: Api, user: User, version: str, rooms: dict[str, dict[str, Any]]) -> Any:
    body = {"rooms": {room: {"sessions": sessions} for room, sessions in rooms.items()}}
    return api.put("room_keys/keys", user, json=body, params={"version": version})


def get_all(api: Api, user: User, version: str) -> dict[str, Any]:
    response = api.get("room_keys/keys", user, params={"version": version})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def version_info(api: Api, user: User, version: str | None = None) -> dict[str, Any]:
    path = "room_keys/version" if version is None else f"room_keys/version/{version}"
    response = api.get(path, user)
    assert response.status_code == 200, response.text
    return response.json()


def stored_count(api: Api, user: User, version: str) -> int:
    rooms = get_all(api, user, version)["rooms"]
    return sum(len(room["sessions"]) for room in rooms.values())


# -- versions ------------------------------------------------------------------------------


def test_no_backup(api: Api) -> None:
    user = api.register()
    assert_error(api.get("room_keys/version", user), 404, "M_NOT_FOUND")
    assert_error(api.get("room_keys/version/", user), 404, "M_NOT_FOUND")
    assert_error(api.get("room_keys/version/1", user), 404, "M_NOT_FOUND")
    assert_error(put_session(api, user, "1", ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    assert_error(put_all(api, user, "1", {ROOM: {SESSION: key()}}), 404, "M_NOT_FOUND")
    assert_error(api.get("room_keys/keys", user, params={"version": "1"}), 404, "M_NOT_FOUND")
    assert_error(api.delete("room_keys/keys", user, params={"version": "1"}), 404, "M_NOT_FOUND")


def test_requires_auth(api: Api) -> None:
    assert_error(api.get("room_keys/version"), 401, "M_MISSING_TOKEN")
    assert_error(
        api.post("room_keys/version", json={"algorithm": ALGORITHM, "auth_data": {}}),
        401,
        "M_MISSING_TOKEN",
    )
    assert_error(api.get("room_keys/keys", params={"version": "1"}), 401, "M_MISSING_TOKEN")
    assert_error(
        api.get("room_keys/keys", "bogus", params={"version": "1"}), 401, "M_UNKNOWN_TOKEN"
    )


def test_create_and_get_versions(api: Api) -> None:
    user = api.register()
    assert create_backup(api, user) == "1"
    info = version_info(api, user)
    assert info == {
        "algorithm": ALGORITHM,
        "auth_data": AUTH_DATA,
        "count": 0,
        "etag": info["etag"],
        "version": "1",
    }
    assert isinstance(info["etag"], str)
    assert version_info(api, user, "1") == info
    assert api.get("room_keys/version/", user).json() == info
    assert api.get("/_matrix/client/r0/room_keys/version", user).json() == info

    other_auth = {"public_key": "second"}
    assert create_backup(api, user, other_auth) == "2"
    current = version_info(api, user)
    assert current["version"] == "2" and current["auth_data"] == other_auth
    assert version_info(api, user, "1") == info  # the old version is still readable


def test_create_version_validation(api: Api) -> None:
    user = api.register()
    path = "room_keys/version"
    assert_error(
        api.post(path, user, json={"algorithm": "m.megolm_backup.v1", "auth_data": {}}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(api.post(path, user, json={"algorithm": ALGORITHM}), 400, "M_MISSING_PARAM")
    assert_error(api.post(path, user, json={"auth_data": {}}), 400, "M_MISSING_PARAM")
    assert_error(
        api.post(path, user, json={"algorithm": ALGORITHM, "auth_data": "opaque"}),
        400,
        "M_BAD_JSON",
    )
    assert_error(api.post(path, user, json={"algorithm": 1, "auth_data": {}}), 400, "M_BAD_JSON")
    assert_error(api.post(path, user, content=b"{nope"), 400, "M_NOT_JSON")
    # Nothing was created.
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")


def test_update_version(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    assert put_session(api, user, version, ROOM, SESSION, key()).status_code == 200
    before = version_info(api, user)

    new_auth = {"public_key": "abcdefg", "signatures": {"@a:b": {"ed25519:Y": "new"}}}
    response = api.put(
        f"room_keys/version/{version}", user, json={"algorithm": ALGORITHM, "auth_data": new_auth}
    )
    assert response.status_code == 200 and response.json() == {}
    after = version_info(api, user)
    assert after == {**before, "auth_data": new_auth}  # etag and count untouched

    # A body version equal to the path is fine; a different one is not.
    body = {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "version": version}
    assert api.put(f"room_keys/version/{version}", user, json=body).status_code == 200
    body["version"] = "7"
    assert_error(api.put(f"room_keys/version/{version}", user, json=body), 400, "M_INVALID_PARAM")
    # The algorithm cannot change.
    body = {"algorithm": "org.example.other", "auth_data": AUTH_DATA}
    assert_error(api.put(f"room_keys/version/{version}", user, json=body), 400, "M_INVALID_PARAM")
    assert version_info(api, user)["auth_data"] == AUTH_DATA

    body = {"algorithm": ALGORITHM, "auth_data": AUTH_DATA}
    for unknown in ("2", "01", "x", "99999999999999999999"):
        assert_error(api.put(f"room_keys/version/{unknown}", user, json=body), 404, "M_NOT_FOUND")
    assert_error(
        api.put(f"room_keys/version/{version}", user, json={"algorithm": ALGORITHM}),
        400,
        "M_MISSING_PARAM",
    )


def test_delete_version(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    assert put_session(api, user, version, ROOM, SESSION, key()).status_code == 200

    response = api.delete(f"room_keys/version/{version}", user)
    assert response.status_code == 200 and response.json() == {}
    # Deleting a deleted version succeeds again; one that never existed does not.
    assert api.delete(f"room_keys/version/{version}", user).status_code == 200
    assert_error(api.delete("room_keys/version/2", user), 404, "M_NOT_FOUND")
    assert_error(api.delete("room_keys/version/abc", user), 404, "M_NOT_FOUND")

    assert_error(api.get(f"room_keys/version/{version}", user), 404, "M_NOT_FOUND")
    assert_error(api.get("room_keys/version", user), 404, "M_NOT_FOUND")
    params = {"version": version}
    assert_error(api.get("room_keys/keys", user, params=params), 404, "M_NOT_FOUND")
    assert_error(api.get(f"room_keys/keys/{enc(ROOM)}", user, params=params), 404, "M_NOT_FOUND")
    assert_error(
        api.get(f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", user, params=params),
        404,
        "M_NOT_FOUND",
    )
    assert_error(put_session(api, user, version, ROOM, SESSION, key()), 404, "M_NOT_FOUND")

    # Numbers are never reused, and the keys of the deleted version are gone for good.
    assert create_backup(api, user) == "2"
    assert get_all(api, user, "2") == {"rooms": {}}


def test_deleting_current_version_makes_previous_current(api: Api) -> None:
    user = api.register()
    first = create_backup(api, user)
    second = create_backup(api, user)
    assert (first, second) == ("1", "2")

    body = assert_error(
        put_session(api, user, first, ROOM, SESSION, key()), 403, "M_WRONG_ROOM_KEYS_VERSION"
    )
    assert body["current_version"] == second
    assert put_session(api, user, second, ROOM, SESSION, key()).status_code == 200

    assert api.delete(f"room_keys/version/{second}", user).status_code == 200
    assert version_info(api, user)["version"] == first
    response = put_session(api, user, first, ROOM, SESSION, key())
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 1
    # The deleted version is not writable, and the next version skips its number.
    assert_error(put_session(api, user, second, ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    assert create_backup(api, user) == "3"
    body = assert_error(
        put_session(api, user, first, ROOM, SESSION, key()), 403, "M_WRONG_ROOM_KEYS_VERSION"
    )
    assert body["current_version"] == "3"


def test_wrong_and_unknown_versions_for_uploads(api: Api) -> None:
    user = api.register()
    create_backup(api, user)
    create_backup(api, user)
    for path_version in ("1",):
        for response in (
            put_session(api, user, path_version, ROOM, SESSION, key()),
            api.put(
                f"room_keys/keys/{enc(ROOM)}",
                user,
                json={"sessions": {SESSION: key()}},
                params={"version": path_version},
            ),
            put_all(api, user, path_version, {ROOM: {SESSION: key()}}),
        ):
            body = assert_error(response, 403, "M_WRONG_ROOM_KEYS_VERSION")
            assert body["current_version"] == "2"
    for unknown in ("3", "0", "02", "two", ""):
        assert_error(put_session(api, user, unknown, ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    assert version_info(api, user, "1")["count"] == 0


# -- keys ------------------------------------------------------------------------------------


def test_upload_and_read_on_every_path(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    room2 = "!other:example.org"

    response = put_session(api, user, version, ROOM, SESSION, key(3, 1, True))
    assert response.status_code == 200
    first = response.json()
    assert first["count"] == 1 and isinstance(first["etag"], str)

    response = api.put(
        f"room_keys/keys/{enc(ROOM)}",
        user,
        json={"sessions": {"s2": key(5), "s3": key(6)}},
        params={"version": version},
    )
    assert response.json()["count"] == 3
    response = put_all(api, user, version, {room2: {"s4": key(1)}, ROOM: {"s5": key(2)}})
    assert response.json()["count"] == 5

    everything = get_all(api, user, version)
    assert everything == {
        "rooms": {
            ROOM: {
                "sessions": {
                    SESSION: key(3, 1, True),
                    "s2": key(5),
                    "s3": key(6),
                    "s5": key(2),
                }
            },
            room2: {"sessions": {"s4": key(1)}},
        }
    }
    room = api.get(f"room_keys/keys/{enc(ROOM)}", user, params={"version": version})
    assert room.status_code == 200 and room.json() == everything["rooms"][ROOM]
    one = api.get(f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", user, params={"version": version})
    assert one.status_code == 200 and one.json() == key(3, 1, True)
    info = version_info(api, user)
    assert info["count"] == 5 and info["etag"] == response.json()["etag"]
    # r0 works the same.
    r0 = api.get("/_matrix/client/r0/room_keys/keys", user, params={"version": version})
    assert r0.json() == everything


def test_empty_results_and_missing_keys(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    params = {"version": version}
    assert get_all(api, user, version) == {"rooms": {}}
    response = api.get(f"room_keys/keys/{enc(ROOM)}", user, params=params)
    assert response.status_code == 200 and response.json() == {"sessions": {}}
    assert_error(
        api.get(f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", user, params=params),
        404,
        "M_NOT_FOUND",
    )
    put_session(api, user, version, ROOM, SESSION, key())
    assert api.get("room_keys/keys/%21elsewhere", user, params=params).json() == {"sessions": {}}
    assert_error(
        api.get(f"room_keys/keys/{enc(ROOM)}/other", user, params=params), 404, "M_NOT_FOUND"
    )
    # Keys of a version that does not exist: 404 everywhere.
    for bad in ("2", "x"):
        bad_params = {"version": bad}
        assert_error(api.get("room_keys/keys", user, params=bad_params), 404, "M_NOT_FOUND")
        assert_error(
            api.get(f"room_keys/keys/{enc(ROOM)}", user, params=bad_params), 404, "M_NOT_FOUND"
        )
        assert_error(
            api.get(f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", user, params=bad_params),
            404,
            "M_NOT_FOUND",
        )
        assert_error(api.delete("room_keys/keys", user, params=bad_params), 404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "room_keys/keys", {"rooms": {}}),
        ("GET", "room_keys/keys", None),
        ("DELETE", "room_keys/keys", None),
        ("PUT", "room_keys/keys/%21r%3Ax", {"sessions": {}}),
        ("GET", "room_keys/keys/%21r%3Ax", None),
        ("DELETE", "room_keys/keys/%21r%3Ax", None),
        ("PUT", "room_keys/keys/%21r%3Ax/s", key()),
        ("GET", "room_keys/keys/%21r%3Ax/s", None),
        ("DELETE", "room_keys/keys/%21r%3Ax/s", None),
    ],
)
def test_missing_version_parameter(api: Api, method: str, path: str, body: Any) -> None:
    user = api.register()
    create_backup(api, user)
    assert_error(api.request(method, path, user, json=body), 400, "M_MISSING_PARAM")


def test_percent_encoded_ids_round_trip(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    params = {"version": version}
    room = "!weird room/with?odd#chars%2F&é:example.org"
    sessions = [SESSION, "a/b+c=d", "with space%20and%", "ünïcødé/🔑", "a..b", "%2F"]
    for session in sessions:
        response = put_session(api, user, version, room, session, key(1, 0, False, {"s": session}))
        assert response.status_code == 200, (session, response.text)
    assert version_info(api, user)["count"] == len(sessions)

    everything = get_all(api, user, version)
    assert set(everything["rooms"]) == {room}
    assert set(everything["rooms"][room]["sessions"]) == set(sessions)
    for session in sessions:
        response = api.get(f"room_keys/keys/{enc(room)}/{enc(session)}", user, params=params)
        assert response.status_code == 200, session
        assert response.json()["session_data"] == {"s": session}
    room_keys = api.get(f"room_keys/keys/{enc(room)}", user, params=params).json()
    assert set(room_keys["sessions"]) == set(sessions)

    response = api.delete(f"room_keys/keys/{enc(room)}/{enc('a/b+c=d')}", user, params=params)
    assert response.json()["count"] == len(sessions) - 1
    response = api.delete(f"room_keys/keys/{enc(room)}", user, params=params)
    assert response.json()["count"] == 0


def test_session_data_round_trips_exactly(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    data = {
        "ephemeral": "base64+ephemeral/key",
        "ciphertext": 'quote" backslash\\ newline\n nul\u0000 unicode é 🔑',
        "mac": "m",
        "nested": {"list": [1, 2.5, None, True, {"deep": []}], "empty": {}},
    }
    assert put_session(api, user, version, ROOM, SESSION, key(data=data)).status_code == 200
    assert get_all(api, user, version)["rooms"][ROOM]["sessions"][SESSION]["session_data"] == data
    response = api.get(
        f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", user, params={"version": version}
    )
    assert response.json()["session_data"] == data


# -- merge, etag and count ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "uploaded", "replaces"),
    [
        # is_verified decides first, whatever the other fields say.
        (key(0, 0, False), key(9, 9, True), True),
        (key(9, 9, True), key(0, 0, False), False),
        # Same verification: lower first_message_index wins, whatever forwarded_count says.
        (key(5, 0, True), key(4, 9, True), True),
        (key(4, 0, False), key(5, 0, False), False),
        # Then lower forwarded_count.
        (key(4, 3, False), key(4, 2, False), True),
        (key(4, 2, True), key(4, 3, True), False),
        # All equal: the stored key stays (even with different session_data).
        (key(4, 2, True, {"a": 1}), key(4, 2, True, {"a": 2}), False),
    ],
)
def test_merge_rule(api: Api, stored: Any, uploaded: Any, replaces: bool) -> None:
    user = api.register()
    version = create_backup(api, user)
    etag = put_session(api, user, version, ROOM, SESSION, stored).json()["etag"]
    response = put_session(api, user, version, ROOM, SESSION, uploaded)
    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert (response.json()["etag"] != etag) == replaces
    kept = get_all(api, user, version)["rooms"][ROOM]["sessions"][SESSION]
    assert kept == (uploaded if replaces else stored)


def test_etag_changes_exactly_when_keys_change(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    params = {"version": version}
    etags: list[str] = [version_info(api, user)["etag"]]

    def check(response: Any, count: int, changed: bool) -> None:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == count == stored_count(api, user, version)
        assert (body["etag"] != etags[-1]) == changed, (body, etags)
        assert body["etag"] not in etags[:-1]
        info = version_info(api, user)
        assert (info["etag"], info["count"]) == (body["etag"], count)
        if changed:
            etags.append(body["etag"])

    batch = {ROOM: {f"s{i}": key(5) for i in range(10)}, "!b:x": {"t": key(5)}}
    check(put_all(api, user, version, batch), 11, True)
    check(put_all(api, user, version, batch), 11, False)  # same keys again: no change
    worse = {ROOM: {f"s{i}": key(6) for i in range(10)}}
    check(put_all(api, user, version, worse), 11, False)  # nothing replaced
    better_one = {ROOM: {"s3": key(1)}, "!b:x": {"t": key(9)}}
    check(put_all(api, user, version, better_one), 11, True)  # one replaced
    check(put_all(api, user, version, {"!c:x": {"u": key()}}), 12, True)  # insert
    check(put_all(api, user, version, {}), 12, False)  # empty upload
    # auth_data updates leave the etag alone.
    api.put(f"room_keys/version/{version}", user, json={"algorithm": ALGORITHM, "auth_data": {}})
    assert version_info(api, user)["etag"] == etags[-1]
    # Deleting nothing changes nothing; deleting something does.
    check(api.delete(f"room_keys/keys/{enc(ROOM)}/nope", user, params=params), 12, False)
    check(api.delete("room_keys/keys/%21nope", user, params=params), 12, False)
    check(api.delete(f"room_keys/keys/{enc(ROOM)}/s3", user, params=params), 11, True)
    check(api.delete(f"room_keys/keys/{enc(ROOM)}", user, params=params), 2, True)
    check(api.delete("room_keys/keys", user, params=params), 0, True)
    check(api.delete("room_keys/keys", user, params=params), 0, False)
    # Re-inserting after deletion changes the etag again, never back to an old value.
    check(put_all(api, user, version, batch), 11, True)


def test_keys_can_be_deleted_from_an_older_version(api: Api) -> None:
    """Deleting keys only needs an existing version (Synapse), not the current one."""
    user = api.register()
    old = create_backup(api, user)
    put_session(api, user, old, ROOM, SESSION, key())
    create_backup(api, user)
    response = api.delete("room_keys/keys", user, params={"version": old})
    assert response.status_code == 200 and response.json()["count"] == 0


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "errcode"),
    [
        ("first_message_index", -1, "M_INVALID_PARAM"),
        ("first_message_index", 2**53, "M_INVALID_PARAM"),
        ("first_message_index", 1.5, "M_INVALID_PARAM"),
        ("first_message_index", "1", "M_INVALID_PARAM"),
        ("forwarded_count", -3, "M_INVALID_PARAM"),
        ("forwarded_count", None, "M_INVALID_PARAM"),
        ("is_verified", 1, "M_INVALID_PARAM"),
        ("is_verified", "true", "M_INVALID_PARAM"),
        ("session_data", "opaque", "M_INVALID_PARAM"),
        ("session_data", [1], "M_INVALID_PARAM"),
        ("session_data", None, "M_INVALID_PARAM"),
        ("first_message_index", ..., "M_MISSING_PARAM"),
        ("is_verified", ..., "M_MISSING_PARAM"),
        ("session_data", ..., "M_MISSING_PARAM"),
    ],
)
def test_one_bad_key_fails_the_batch_and_is_named(
    api: Api, field: str, value: Any, errcode: str
) -> None:
    user = api.register()
    version = create_backup(api, user)
    rooms: dict[str, dict[str, Any]] = {
        f"!room{r}:x": {f"sess{r}-{i}": key(i) for i in range(40)} for r in range(5)
    }
    bad = key()
    if value is ...:
        del bad[field]
    else:
        bad[field] = value
    rooms["!room3:x"]["bad/session+id"] = bad  # the 201st key

    body = assert_error(put_all(api, user, version, rooms), 400, errcode)
    assert "!room3:x" in body["error"] and "bad/session+id" in body["error"], body
    assert field in body["error"], body
    # The per-room and per-session paths name it too.
    body = assert_error(
        api.put(
            "room_keys/keys/%21room3%3Ax",
            user,
            json={"sessions": rooms["!room3:x"]},
            params={"version": version},
        ),
        400,
        errcode,
    )
    assert "!room3:x" in body["error"] and "bad/session+id" in body["error"], body
    body = assert_error(
        put_session(api, user, version, "!room3:x", "bad/session+id", bad), 400, errcode
    )
    assert "bad/session+id" in body["error"], body
    # Nothing was written.
    info = version_info(api, user)
    assert info["count"] == 0 and info["etag"] == version_info(api, user, version)["etag"]
    assert get_all(api, user, version) == {"rooms": {}}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"rooms": []}, "M_BAD_JSON"),
        ({"rooms": {"!r:x": []}}, "M_BAD_JSON"),
        ({"rooms": {"!r:x": {}}}, "M_MISSING_PARAM"),
        ({"rooms": {"!r:x": {"sessions": "x"}}}, "M_BAD_JSON"),
        ([], "M_BAD_JSON"),
    ],
)
def test_malformed_upload_bodies(api: Api, body: Any, errcode: str) -> None:
    user = api.register()
    version = create_backup(api, user)
    response = api.put("room_keys/keys", user, json=body, params={"version": version})
    assert_error(response, 400, errcode)
    assert_error(
        api.put("room_keys/keys", user, content=b'{"rooms": {', params={"version": version}),
        400,
        "M_NOT_JSON",
    )
    assert_error(
        api.put("room_keys/keys/%21r%3Ax", user, json={}, params={"version": version}),
        400,
        "M_MISSING_PARAM",
    )
    assert version_info(api, user)["count"] == 0


def test_overlong_and_nul_ids_are_refused(api: Api) -> None:
    user = api.register()
    version = create_backup(api, user)
    for room, session in (("!" + "r" * 300, "s"), (ROOM, "s" * 256), (ROOM, "a\u0000b")):
        response = put_all(api, user, version, {room: {session: key()}})
        assert_error(response, 400, "M_INVALID_PARAM")
    response = put_session(api, user, version, ROOM, "a\u0000b", key())
    assert_error(response, 400, "M_INVALID_PARAM")
    # 255 bytes is fine.
    assert put_all(api, user, version, {ROOM: {"s" * 255: key()}}).status_code == 200


# -- isolation -----------------------------------------------------------------------------


def test_users_cannot_see_or_touch_each_others_backups(api: Api) -> None:
    alice, bob = api.register(), api.register()
    version = create_backup(api, alice)
    put_session(api, alice, version, ROOM, SESSION, key(1))
    params = {"version": version}

    assert_error(api.get("room_keys/version", bob), 404, "M_NOT_FOUND")
    assert_error(api.get(f"room_keys/version/{version}", bob), 404, "M_NOT_FOUND")
    body = {"algorithm": ALGORITHM, "auth_data": {"public_key": "evil"}}
    assert_error(api.put(f"room_keys/version/{version}", bob, json=body), 404, "M_NOT_FOUND")
    assert_error(api.delete(f"room_keys/version/{version}", bob), 404, "M_NOT_FOUND")
    assert_error(put_session(api, bob, version, ROOM, SESSION, key(0)), 404, "M_NOT_FOUND")
    assert_error(api.get("room_keys/keys", bob, params=params), 404, "M_NOT_FOUND")
    assert_error(
        api.get(f"room_keys/keys/{enc(ROOM)}/{enc(SESSION)}", bob, params=params),
        404,
        "M_NOT_FOUND",
    )
    assert_error(api.delete("room_keys/keys", bob, params=params), 404, "M_NOT_FOUND")

    # Bob's own version "1" is a different backup.
    assert create_backup(api, bob) == version
    assert get_all(api, bob, version) == {"rooms": {}}
    put_session(api, bob, version, ROOM, SESSION, key(0, 0, True))
    api.delete("room_keys/keys", bob, params=params)
    api.delete(f"room_keys/version/{version}", bob)

    info = version_info(api, alice)
    assert info["auth_data"] == AUTH_DATA and info["count"] == 1
    assert get_all(api, alice, version)["rooms"][ROOM]["sessions"][SESSION] == key(1)


@pytest.mark.parametrize(
    "session_data",
    [b'{"a":"\xff"}', rb'{"a":"\ud800"}', b'{"a":NaN}', b'{"a":"x\x01"}', b'{"a":1,}'],
)
def test_session_data_must_be_valid_json(api: Api, session_data: bytes) -> None:
    user = api.register()
    version = create_backup(api, user)
    body = (
        b'{"rooms":{"!r:x":{"sessions":{"s":{"first_message_index":0,"forwarded_count":0,'
        b'"is_verified":false,"session_data":' + session_data + b"}}}}}"
    )
    response = api.put("room_keys/keys", user, content=body, params={"version": version})
    assert_error(response, 400, "M_NOT_JSON")
    assert version_info(api, user)["count"] == 0
