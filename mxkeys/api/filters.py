"""Filters (spec: `filter.yaml`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, path_param, requester
from mxkeys.errors import forbidden, not_found


class _RawJSON(Response):
    media_type = "application/json"


async def create_filter(request: Request) -> Response:
    who = await requester(request)
    if path_param(request, "user_id") != who.user_id:
        raise forbidden("Cannot create filters for other users")
    body = await json_body(request, dict[str, Any])
    filter_id = await homeserver(request).filters.create(who.user_id, body)
    return json_response({"filter_id": filter_id})


async def get_filter(request: Request) -> Response:
    who = await requester(request)
    if path_param(request, "user_id") != who.user_id:
        raise forbidden("Cannot get filters for other users")
    stored = await homeserver(request).filters.get_json(
        who.user_id, path_param(request, "filter_id")
    )
    if stored is None:
        raise not_found("No such filter")
    return _RawJSON(stored)


routes = [
    Route("/user/{user_id}/filter", create_filter, methods=["POST"]),
    Route("/user/{user_id}/filter/{filter_id}", get_filter, methods=["GET"]),
]
