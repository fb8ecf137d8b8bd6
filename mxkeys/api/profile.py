"""Profiles (spec: `profile.yaml`). `displayname` and `avatar_url` are served by the generic
`/profile/{userId}/{keyName}` routes, like every other field."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, path_param, requester
from mxkeys.errors import missing_param


async def get_profile(request: Request) -> Response:
    profile = await homeserver(request).profile.get_full_profile(path_param(request, "user_id"))
    return json_response(profile)


async def get_field(request: Request) -> Response:
    field = path_param(request, "key_name")
    value = await homeserver(request).profile.get_field(path_param(request, "user_id"), field)
    return json_response({field: value})


async def put_field(request: Request) -> Response:
    who = await requester(request)
    user_id = path_param(request, "user_id")
    field = path_param(request, "key_name")
    body = await json_body(request, dict[str, Any])
    if field not in body:
        raise missing_param(f"Missing key '{field}'")
    await homeserver(request).profile.set_field(who.user_id, user_id, field, body[field])
    return json_response({})


async def delete_field(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).profile.delete_field(
        who.user_id, path_param(request, "user_id"), path_param(request, "key_name")
    )
    return json_response({})


routes = [
    Route("/profile/{user_id}", get_profile, methods=["GET"]),
    Route("/profile/{user_id}/{key_name}", get_field, methods=["GET"]),
    Route("/profile/{user_id}/{key_name}", put_field, methods=["PUT"]),
    Route("/profile/{user_id}/{key_name}", delete_field, methods=["DELETE"]),
]
