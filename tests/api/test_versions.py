from tests.helpers import Api, assert_error


def test_versions(api: Api) -> None:
    response = api.get("/_matrix/client/versions")
    assert response.status_code == 200
    versions = response.json()["versions"]
    assert "v1.1" in versions and "v1.12" in versions


def test_well_known(api: Api, server) -> None:
    response = api.get("/.well-known/matrix/client")
    assert response.json() == {"m.homeserver": {"base_url": server.base_url}}


def test_unknown_endpoint_and_wrong_method(api: Api) -> None:
    assert_error(api.get("does/not/exist"), 404, "M_UNRECOGNIZED")
    assert_error(api.get("/_matrix/nothing"), 404, "M_UNRECOGNIZED")
    assert_error(api.delete("login"), 405, "M_UNRECOGNIZED")


def test_cors(api: Api) -> None:
    response = api.request("OPTIONS", "login", headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in response.headers["access-control-allow-headers"]
    assert "PUT" in api.get("login").headers["access-control-allow-methods"]


def test_capabilities_requires_auth(api: Api) -> None:
    assert_error(api.get("capabilities"), 401, "M_MISSING_TOKEN")
    user = api.register()
    caps = api.get("capabilities", user).json()["capabilities"]
    assert caps["m.change_password"] == {"enabled": False}
    assert caps["m.room_versions"] == {"default": "11",
                                       "available": {"10": "stable", "11": "stable"}}


def test_r0_prefix(api: Api) -> None:
    response = api.get("/_matrix/client/r0/login")
    assert response.status_code == 200
    assert {"type": "m.login.password"} in response.json()["flows"]
