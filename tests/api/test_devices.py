from tests.helpers import Api, assert_error


def test_list_get_rename(api: Api) -> None:
    user = api.register(initial_device_display_name="first")
    second = api.login(user)
    devices = api.get("devices", user).json()["devices"]
    assert sorted(d["device_id"] for d in devices) == sorted([user.device_id, second.device_id])
    for device in devices:
        assert isinstance(device["last_seen_ts"], int)
    assert api.put(f"devices/{second.device_id}", user,
                   json={"display_name": "renamed"}).json() == {}
    got = api.get(f"devices/{second.device_id}", user).json()
    assert got["device_id"] == second.device_id and got["display_name"] == "renamed"
    assert_error(api.get("devices/NOPE", user), 404, "M_NOT_FOUND")
    assert_error(api.put("devices/NOPE", user, json={"display_name": "x"}), 404, "M_NOT_FOUND")
    assert_error(api.put(f"devices/{second.device_id}", user, json={"display_name": 3}), 400,
                 "M_BAD_JSON")


def test_cannot_see_other_users_devices(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    assert_error(api.get(f"devices/{bob.device_id}", alice), 404, "M_NOT_FOUND")
    assert_error(api.put(f"devices/{bob.device_id}", alice, json={"display_name": "x"}), 404,
                 "M_NOT_FOUND")
    # Deleting "their" device ID only ever touches the requester's own devices.
    session = api.delete(f"devices/{bob.device_id}", alice, json={}).json()["session"]
    assert api.delete(f"devices/{bob.device_id}", alice,
                      json={"auth": api.password_auth(alice, session)}).status_code == 200
    assert api.get("account/whoami", bob).status_code == 200


def test_delete_device_with_uia(api: Api) -> None:
    user = api.register()
    other = api.login(user)
    first = api.delete(f"devices/{other.device_id}", user)
    assert first.status_code == 401
    body = first.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    assert "errcode" not in body

    wrong = dict(api.password_auth(user, body["session"]), password="wrong")
    failed = api.delete(f"devices/{other.device_id}", user, json={"auth": wrong})
    failure = assert_error(failed, 401, "M_FORBIDDEN")
    assert failure["session"] == body["session"] and failure["completed"] == []

    ok = api.delete(f"devices/{other.device_id}", user,
                    json={"auth": api.password_auth(user, body["session"])})
    assert ok.status_code == 200, ok.text
    assert_error(api.get("account/whoami", other), 401, "M_UNKNOWN_TOKEN")
    assert_error(api.get(f"devices/{other.device_id}", user), 404, "M_NOT_FOUND")
    # Already gone: still succeeds (after auth).
    session = api.delete(f"devices/{other.device_id}", user).json()["session"]
    again = api.delete(f"devices/{other.device_id}", user,
                       json={"auth": api.password_auth(user, session)})
    assert again.status_code == 200


def test_uia_session_bound_to_user_and_request(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    alice2 = api.login(alice)
    session = api.delete(f"devices/{alice2.device_id}", alice).json()["session"]
    # Bob cannot complete Alice's session, even with his own password.
    assert_error(api.delete(f"devices/{alice2.device_id}", bob,
                            json={"auth": api.password_auth(bob, session)}), 403, "M_FORBIDDEN")
    # The session cannot be moved to another operation.
    assert_error(api.post("delete_devices", alice, json={
        "devices": [alice2.device_id], "auth": api.password_auth(alice, session)}),
        403, "M_FORBIDDEN")
    # Alice's password given for Bob's identity fails the stage.
    mixed = dict(api.password_auth(alice, session), identifier={"type": "m.id.user",
                                                               "user": bob.user_id})
    assert_error(api.delete(f"devices/{alice2.device_id}", alice, json={"auth": mixed}), 401,
                 "M_FORBIDDEN")
    assert api.get("account/whoami", alice2).status_code == 200


def test_delete_devices_bulk(api: Api) -> None:
    user = api.register()
    a = api.login(user)
    b = api.login(user)
    first = api.post("delete_devices", user, json={"devices": [a.device_id, b.device_id]})
    assert first.status_code == 401
    ok = api.post("delete_devices", user, json={
        "devices": [a.device_id, b.device_id, "UNKNOWN"],
        "auth": api.password_auth(user, first.json()["session"])})
    assert ok.status_code == 200, ok.text
    devices = [d["device_id"] for d in api.get("devices", user).json()["devices"]]
    assert devices == [user.device_id]
    for gone in (a, b):
        assert_error(api.get("account/whoami", gone), 401, "M_UNKNOWN_TOKEN")


def test_delete_devices_bad_bodies(api: Api) -> None:
    user = api.register()
    assert_error(api.post("delete_devices", user, content=b"nope"), 400, "M_NOT_JSON")
    assert_error(api.post("delete_devices", user, json={}), 400, "M_MISSING_PARAM")
    assert_error(api.post("delete_devices", user, json={"devices": "ABC"}), 400, "M_BAD_JSON")
    assert_error(api.post("delete_devices", user, json={"devices": [], "auth": []}), 400,
                 "M_BAD_JSON")
    assert_error(api.delete("devices/X", user, content=b"{{"), 400, "M_NOT_JSON")
