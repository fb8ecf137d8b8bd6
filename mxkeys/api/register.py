"""Account registration (spec: "Account registration and management")."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, query_param
from mxkeys.api.login import check_device_id
from mxkeys.errors import MatrixError, forbidden
from mxkeys.services.uia import DUMMY, UiaRequest

REGISTER_FLOWS = [[DUMMY]]


class RegisterBody(msgspec.Struct):
    auth: Any = None
    username: str | None = None
    password: str | None = None
    device_id: str | None = None
    initial_device_display_name: str | None = None
    inhibit_login: bool = False
    refresh_token: bool = False


def _check_enabled(request: Request) -> None:
    if not homeserver(request).config.enable_registration:
        raise forbidden("Registration has been disabled")


async def register(request: Request) -> Response:
    hs = homeserver(request)
    _check_enabled(request)
    kind = request.query_params.get("kind", "user")
    if kind == "guest":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
    if kind != "user":
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be 'user' or 'guest'")
    # Every step counts (each may start a UIA session): per client address.
    await hs.rate_limits.register.check(request.client.host if request.client else "-")
    body = await json_body(request, RegisterBody)
    check_device_id(body.device_id)
    # Check the username before authentication, as Synapse does, so a client learns of a
    # taken or invalid name before walking through the stages.
    user_id = None
    if body.username is not None:
        user_id = await hs.registration.check_available(body.username)
    await hs.uia.authenticate(UiaRequest("POST", "register", None), body.auth, REGISTER_FLOWS)
    if user_id is None:
        user_id = await hs.registration.generate_user_id()
    result = await hs.registration.register(
        user_id,
        body.password,
        login=not body.inhibit_login,
        device_id=body.device_id,
        display_name=body.initial_device_display_name,
    )
    request.scope["mxkeys.user"] = result.user_id
    response: dict[str, Any] = {"user_id": result.user_id, "home_server": hs.config.server_name}
    if result.access_token is not None:
        response["access_token"] = result.access_token
        response["device_id"] = result.device_id
    return json_response(response)


async def available(request: Request) -> Response:
    _check_enabled(request)
    username = query_param(request, "username", required=True)
    assert username is not None
    await homeserver(request).registration.check_available(username)
    return json_response({"available": True})


routes = [
    Route("/register", register, methods=["POST"]),
    Route("/register/available", available, methods=["GET"]),
]
