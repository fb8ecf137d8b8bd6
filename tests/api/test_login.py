from tests.helpers import Api, assert_error


def test_login_flows(api: Api) -> None:
    assert api.get("login").json() == {"flows": [{"type": "m.login.password"}]}


def test_login_identifier_and_legacy_user(api: Api) -> None:
    user = api.register()
    by_identifier = api.post(
        "login",
        json={"type": "m.login.password", "password": user.password,
              "identifier": {"type": "m.id.user", "user": user.user_id},
              "initial_device_display_name": "laptop"},
    )
    assert by_identifier.status_code == 200, by_identifier.text
    data = by_identifier.json()
    assert data["user_id"] == user.user_id
    assert data["device_id"] != user.device_id
    assert data["access_token"] != user.access_token
    assert api.get(f"devices/{data['device_id']}", user).json()["display_name"] == "laptop"

    legacy = api.post(
        "login",
        json={"type": "m.login.password", "user": user.localpart, "password": user.password},
    )
    assert legacy.status_code == 200
    assert legacy.json()["user_id"] == user.user_id


def test_login_reuses_device_id(api: Api) -> None:
    user = api.register()
    again = api.login(user, device_id=user.device_id)
    assert again.device_id == user.device_id
    devices = api.get("devices", user).json()["devices"]
    assert [d["device_id"] for d in devices] == [user.device_id]
    new = api.login(user, device_id="CHOSENID")
    assert new.device_id == "CHOSENID"


def test_login_wrong_password_or_user(api: Api) -> None:
    user = api.register()
    assert_error(
        api.post("login", json={"type": "m.login.password", "user": user.localpart,
                                "password": "wrong"}),
        403, "M_FORBIDDEN",
    )
    assert_error(
        api.post("login", json={"type": "m.login.password", "user": "nobody-here",
                                "password": "x"}),
        403, "M_FORBIDDEN",
    )


def test_login_bad_requests(api: Api) -> None:
    assert_error(api.post("login", json={"type": "m.login.token", "token": "x"}), 400,
                 "M_UNKNOWN")
    assert_error(api.post("login", json={"password": "x"}), 400, "M_MISSING_PARAM")
    assert_error(api.post("login", json={"type": "m.login.password", "password": "x"}), 400,
                 "M_MISSING_PARAM")
    assert_error(
        api.post("login", json={"type": "m.login.password", "password": "x",
                                "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                               "address": "a@b"}}),
        400, "M_UNKNOWN",
    )
    assert_error(api.post("login", content=b"{"), 400, "M_NOT_JSON")


def test_tokens_missing_unknown_and_query_param(api: Api) -> None:
    user = api.register()
    assert_error(api.get("account/whoami"), 401, "M_MISSING_TOKEN")
    assert_error(api.get("account/whoami", "not-a-token"), 401, "M_UNKNOWN_TOKEN")
    assert_error(api.get("account/whoami", headers={"Authorization": "Basic abc"}), 401,
                 "M_MISSING_TOKEN")
    by_query = api.get("account/whoami", params={"access_token": user.access_token})
    assert by_query.json()["user_id"] == user.user_id
    # Bytes outside ASCII in the header must not break anything.
    raw = api.http.get(
        "/_matrix/client/v3/account/whoami",
        headers=[(b"Authorization", b"Bearer \xff\xfe\xc3")],
    )
    assert raw.status_code == 401 and raw.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_logout_deletes_device(api: Api) -> None:
    user = api.register()
    other = api.login(user)
    assert api.post("logout", other).status_code == 200
    assert_error(api.get("account/whoami", other), 401, "M_UNKNOWN_TOKEN")
    devices = [d["device_id"] for d in api.get("devices", user).json()["devices"]]
    assert devices == [user.device_id]
    assert api.get("account/whoami", user).status_code == 200


def test_logout_all(api: Api) -> None:
    user = api.register()
    other = api.login(user)
    assert api.post("logout/all", user).json() == {}
    assert_error(api.get("account/whoami", user), 401, "M_UNKNOWN_TOKEN")
    assert_error(api.get("account/whoami", other), 401, "M_UNKNOWN_TOKEN")
    fresh = api.login(user)
    devices = [d["device_id"] for d in api.get("devices", fresh).json()["devices"]]
    assert devices == [fresh.device_id]
