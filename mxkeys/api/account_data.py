"""Account data (spec: `account-data.yaml`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, path_param, requester
from mxkeys.services.account_data import check_owner, check_room_id


class _RawJSON(Response):
    media_type = "application/json"


async def put_global(request: Request) -> Response:
    who = await requester(request)
    check_owner(who.user_id, path_param(request, "user_id"))
    content = await json_body(request, dict[str, Any])
    await homeserver(request).account_data.put(
        who.user_id, None, path_param(request, "type"), content
    )
    return json_response({})


async def get_global(request: Request) -> Response:
    who = await requester(request)
    check_owner(who.user_id, path_param(request, "user_id"))
    content = await homeserver(request).account_data.get_json(
        who.user_id, None, path_param(request, "type")
    )
    return _RawJSON(content)


async def put_room(request: Request) -> Response:
    who = await requester(request)
    check_owner(who.user_id, path_param(request, "user_id"))
    room_id = path_param(request, "room_id")
    check_room_id(room_id)
    content = await json_body(request, dict[str, Any])
    await homeserver(request).account_data.put(
        who.user_id, room_id, path_param(request, "type"), content
    )
    return json_response({})


async def get_room(request: Request) -> Response:
    who = await requester(request)
    check_owner(who.user_id, path_param(request, "user_id"))
    content = await homeserver(request).account_data.get_json(
        who.user_id, path_param(request, "room_id"), path_param(request, "type")
    )
    return _RawJSON(content)


routes = [
    Route("/user/{user_id}/account_data/{type}", put_global, methods=["PUT"]),
    Route("/user/{user_id}/account_data/{type}", get_global, methods=["GET"]),
    Route("/user/{user_id}/rooms/{room_id}/account_data/{type}", put_room, methods=["PUT"]),
    Route("/user/{user_id}/rooms/{room_id}/account_data/{type}", get_room, methods=["GET"]),
]
