"""`GET /keys/changes` (spec: keys.yaml)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_response, query_param, requester


async def keys_changes(request: Request) -> Response:
    who = await requester(request)
    start = query_param(request, "from", required=True)
    end = query_param(request, "to", required=True)
    assert start is not None and end is not None
    body = await homeserver(request).device_lists.keys_changes(who.user_id, start, end)
    return json_response(body)


routes = [Route("/keys/changes", keys_changes, methods=["GET"])]
