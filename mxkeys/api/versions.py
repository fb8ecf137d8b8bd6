"""Discovery: `/versions`, `/.well-known/matrix/client` and `/capabilities`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_response, requester
from mxkeys.services.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS

# The spec releases whose endpoints this server answers as written.
SUPPORTED_VERSIONS = [f"v1.{minor}" for minor in range(1, 13)]


async def versions(request: Request) -> Response:
    return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})


async def well_known_client(request: Request) -> Response:
    base_url = homeserver(request).config.base_url
    return json_response({"m.homeserver": {"base_url": base_url}})


async def capabilities(request: Request) -> Response:
    await requester(request)
    return json_response(
        {
            "capabilities": {
                "m.change_password": {"enabled": False},
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": False},
                "m.room_versions": {
                    "default": DEFAULT_ROOM_VERSION,
                    "available": {version: "stable" for version in ROOM_VERSIONS},
                },
            }
        }
    )


unprefixed_routes = [
    Route("/_matrix/client/versions", versions, methods=["GET"]),
    Route("/.well-known/matrix/client", well_known_client, methods=["GET"]),
]
routes = [Route("/capabilities", capabilities, methods=["GET"])]
