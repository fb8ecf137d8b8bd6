"""Sessions: `/login` and `/logout` (spec: "Login", "Logout")."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, requester
from mxkeys.errors import MatrixError
from mxkeys.ids import MAX_DEVICE_ID_LENGTH

PASSWORD_LOGIN = "m.login.password"


class LoginBody(msgspec.Struct):
    type: str
    identifier: dict[str, Any] | None = None
    user: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    refresh_token: bool = False


def check_device_id(device_id: str | None) -> None:
    if device_id is not None and not (0 < len(device_id) <= MAX_DEVICE_ID_LENGTH):
        raise MatrixError(400, "M_INVALID_PARAM", "device_id must be 1-255 characters")


async def login_flows(request: Request) -> Response:
    return json_response({"flows": [{"type": PASSWORD_LOGIN}]})


async def login(request: Request) -> Response:
    hs = homeserver(request)
    await hs.rate_limits.login.check("ip:" + (request.client.host if request.client else "-"))
    body = await json_body(request, LoginBody)
    if body.type != PASSWORD_LOGIN:
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {body.type}")
    if body.password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter: password")
    check_device_id(body.device_id)
    user_id = hs.uia.user_id_from_identifier(
        {"identifier": body.identifier, "user": body.user}
        if body.identifier is not None
        else {"user": body.user}
    )
    # Per account too: guessing one user's password from many addresses is limited as well.
    await hs.rate_limits.login.check("user:" + user_id)
    result = await hs.auth.login_with_password(
        user_id, body.password, body.device_id, body.initial_device_display_name
    )
    request.scope["mxkeys.user"] = result.user_id
    return json_response(
        {
            "user_id": result.user_id,
            "access_token": result.access_token,
            "device_id": result.device_id,
            "home_server": hs.config.server_name,
            "well_known": {"m.homeserver": {"base_url": hs.config.base_url}},
        }
    )


async def logout(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).devices.delete_devices(who.user_id, [who.device_id])
    return json_response({})


async def logout_all(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).devices.delete_devices(who.user_id, None)
    return json_response({})


routes = [
    Route("/login", login_flows, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/logout/all", logout_all, methods=["POST"]),
]
