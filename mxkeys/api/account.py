"""Who am I (spec: "Current account information")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import json_response, requester


async def whoami(request: Request) -> Response:
    who = await requester(request)
    return json_response({"user_id": who.user_id, "device_id": who.device_id, "is_guest": False})


routes = [Route("/account/whoami", whoami, methods=["GET"])]
