import pytest

from tests.helpers import Api, assert_error, unique_name


def test_register_dummy_flow(api: Api) -> None:
    name = unique_name()
    first = api.post("register", json={"username": name, "password": "pw"})
    assert first.status_code == 401
    body = first.json()
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert body["params"] == {}
    assert isinstance(body["session"], str) and body["session"]
    second = api.post(
        "register",
        json={
            "username": name,
            "password": "pw",
            "device_id": "MYDEVICE",
            "initial_device_display_name": "My phone",
            "auth": {"type": "m.login.dummy", "session": body["session"]},
        },
    )
    assert second.status_code == 200, second.text
    data = second.json()
    assert data["user_id"].startswith(f"@{name}:")
    assert data["device_id"] == "MYDEVICE"
    whoami = api.get("account/whoami", data["access_token"]).json()
    assert whoami["user_id"] == data["user_id"]
    assert whoami["device_id"] == "MYDEVICE"
    device = api.get("devices/MYDEVICE", data["access_token"]).json()
    assert device["display_name"] == "My phone"


def test_register_dummy_without_session(api: Api) -> None:
    response = api.post(
        "register",
        json={"username": unique_name(), "password": "pw", "auth": {"type": "m.login.dummy"}},
    )
    assert response.status_code == 200, response.text


def test_register_inhibit_login(api: Api) -> None:
    name = unique_name()
    response = api.post(
        "register",
        json={
            "username": name,
            "password": "pw",
            "inhibit_login": True,
            "auth": {"type": "m.login.dummy"},
        },
    )
    assert response.status_code == 200
    data = response.json()
    assert "access_token" not in data and "device_id" not in data
    login = api.post(
        "login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
              "password": "pw"},
    )
    assert login.status_code == 200


def test_register_generates_username(api: Api) -> None:
    response = api.post("register", json={"password": "pw", "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200
    assert response.json()["user_id"].startswith("@")


def test_user_in_use(api: Api) -> None:
    user = api.register()
    assert_error(
        api.post("register", json={"username": user.localpart, "password": "x"}),
        400,
        "M_USER_IN_USE",
    )
    assert_error(
        api.get("register/available", params={"username": user.localpart}), 400, "M_USER_IN_USE"
    )


@pytest.mark.parametrize("name", ["Alice", "al ice", "al:ice", "ålice", "", "_bridge", "a" * 300])
def test_invalid_username(api: Api, name: str) -> None:
    assert_error(api.post("register", json={"username": name, "password": "x"}), 400,
                 "M_INVALID_USERNAME")


def test_available(api: Api) -> None:
    response = api.get("register/available", params={"username": unique_name()})
    assert response.json() == {"available": True}
    assert_error(api.get("register/available"), 400, "M_MISSING_PARAM")
    assert_error(api.get("register/available", params={"username": "B@d"}), 400,
                 "M_INVALID_USERNAME")


def test_unknown_session_and_stage(api: Api) -> None:
    assert_error(
        api.post("register", json={"username": unique_name(),
                                   "auth": {"type": "m.login.dummy", "session": "nope"}}),
        400, "M_UNKNOWN",
    )
    first = api.post("register", json={"username": unique_name()}).json()
    response = api.post(
        "register",
        json={"username": unique_name(), "auth": {"type": "m.login.foo",
                                                  "session": first["session"]}},
    )
    body = assert_error(response, 401, "M_UNRECOGNIZED")
    assert body["session"] == first["session"]


def test_session_not_reusable(api: Api) -> None:
    session = api.post("register", json={"username": unique_name()}).json()["session"]
    auth = {"type": "m.login.dummy", "session": session}
    assert api.post("register", json={"username": unique_name(), "auth": auth}).status_code == 200
    assert_error(api.post("register", json={"username": unique_name(), "auth": auth}), 400,
                 "M_UNKNOWN")


def test_guest_and_bad_kind(api: Api) -> None:
    assert_error(api.post("register", params={"kind": "guest"}, json={}), 403,
                 "M_GUEST_ACCESS_FORBIDDEN")
    assert_error(api.post("register", params={"kind": "robot"}, json={}), 400, "M_INVALID_PARAM")


def test_bad_bodies(api: Api) -> None:
    assert_error(api.post("register", content=b"not json"), 400, "M_NOT_JSON")
    assert_error(api.post("register", content=b"[1, 2]"), 400, "M_BAD_JSON")
    assert_error(api.post("register", json={"username": 5}), 400, "M_BAD_JSON")
    assert_error(api.post("register", json={"username": "x", "auth": "dummy"}), 400, "M_BAD_JSON")


def test_registration_disabled(backend: str, server_factory) -> None:
    closed = server_factory(backend, enable_registration=False)
    with Api(closed.base_url) as api:
        assert_error(api.post("register", json={"username": unique_name()}), 403, "M_FORBIDDEN")
        assert_error(api.get("register/available", params={"username": "x"}), 403,
                     "M_FORBIDDEN")
