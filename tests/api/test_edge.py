"""Behaviour every endpoint shares: size limits, logging, odd paths and headers."""

import logging
import time
from collections.abc import Callable

import pytest

from tests.helpers import Api, assert_error


def test_body_too_large(backend: str, server_factory) -> None:
    small = server_factory(backend, max_request_body_bytes=2048)
    with Api(small.base_url) as api:
        big = b'{"username": "' + b"a" * 5000 + b'"}'
        assert_error(api.post("register", content=big), 413, "M_TOO_LARGE")

        # Without Content-Length (chunked), the limit still holds.
        def chunks():
            for _ in range(10):
                yield b" " * 1000
            yield b"{}"

        response = api.http.post("/_matrix/client/v3/register", content=chunks())
        assert_error(response, 413, "M_TOO_LARGE")


def access_lines(caplog: pytest.LogCaptureFixture, wanted: Callable[[str], bool]) -> list[str]:
    """The access log so far, once a line `wanted` is there (or after 5 s): the server logs a
    request after sending its response, so the client may read it first."""
    deadline = time.monotonic() + 5
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "mxkeys.access"]
        if any(wanted(line) for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def test_access_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    user = api.register()

    def wanted(line: str) -> bool:
        return "GET /_matrix/client/v3/account/whoami 200" in line and user.user_id in line

    with caplog.at_level(logging.INFO, logger="mxkeys.access"):
        api.get("account/whoami", user)
        lines = access_lines(caplog, wanted)
    assert any(wanted(line) for line in lines), lines


def test_access_log_names_unknown_endpoints(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators see which endpoints their clients call that the server does not have."""
    user = api.register()
    def wanted(line: str) -> bool:
        return line.startswith("GET unmatched:/_matrix/client/v3/no_such_endpoint/%40x%3Ay 404 ")

    with caplog.at_level(logging.INFO, logger="mxkeys.access"):
        response = api.get("no_such_endpoint/%40x%3Ay", user)
        lines = access_lines(caplog, wanted)
    assert_error(response, 404, "M_UNRECOGNIZED")
    assert any(wanted(line) for line in lines), lines


@pytest.mark.parametrize(
    "path",
    [
        "/_matrix/client/v3/devices/%ZZ",
        "/_matrix/client/v3/devices/%ff%fe",
        "/_matrix/client/v3/devices/a%2Fb",
        "/_matrix/client/v3/devices/" + "x" * 5000,
        "/_matrix/client/v3//devices",
        "/_matrix/client/v3/devices/%00",
    ],
)
def test_odd_paths_never_500(api: Api, path: str) -> None:
    user = api.register()
    response = api.http.get(path, headers={"Authorization": f"Bearer {user.access_token}"})
    assert response.status_code in (400, 404), response.text
    assert response.json()["errcode"] in ("M_NOT_FOUND", "M_UNRECOGNIZED", "M_INVALID_PARAM")


def test_encoded_device_id_round_trips(api: Api) -> None:
    user = api.register()
    other = api.login(user, device_id="a/b+c d")
    response = api.http.get(
        "/_matrix/client/v3/devices/a%2Fb%2Bc%20d",
        headers={"Authorization": f"Bearer {user.access_token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["device_id"] == other.device_id == "a/b+c d"


def test_trailing_slash_is_not_redirected(api: Api) -> None:
    assert_error(api.get("/_matrix/client/v3/login/"), 404, "M_UNRECOGNIZED")


def test_nul_in_json_strings_refused(api: Api) -> None:
    user = api.register()
    response = api.put(f"devices/{user.device_id}", user, content=b'{"display_name": "a\\u0000"}')
    assert_error(response, 400, "M_BAD_JSON")
