"""`GET /sync` (spec: sync.yaml)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_response, query_bool, query_param, requester
from mxkeys.errors import invalid_param

PRESENCE_VALUES = ("offline", "online", "unavailable")


async def sync(request: Request) -> Response:
    hs = homeserver(request)
    who = await requester(request)
    timeout = query_param(request, "timeout") or "0"
    if not timeout.isascii() or not timeout.isdigit() or len(timeout) > 12:
        raise invalid_param("timeout must be a non-negative integer")
    presence = query_param(request, "set_presence")
    if presence is not None and presence not in PRESENCE_VALUES:
        raise invalid_param("set_presence must be offline, online or unavailable")
    sync_filter = await hs.filters.resolve(who.user_id, query_param(request, "filter"))
    response = await hs.sync.sync(
        who,
        query_param(request, "since"),
        int(timeout),
        sync_filter,
        full_state=query_bool(request, "full_state"),
    )
    return json_response(response)


routes = [Route("/sync", sync, methods=["GET"])]
