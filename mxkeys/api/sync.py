"""`GET /sync` (spec: sync.yaml)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import (
    CLIENT_CLOSED_REQUEST,
    homeserver,
    json_response,
    query_bool,
    query_param,
    requester,
    unless_disconnected,
)
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
    work = hs.sync.sync(
        who,
        query_param(request, "since"),
        int(timeout),
        sync_filter,
        full_state=query_bool(request, "full_state"),
    )
    if int(timeout) == 0:
        return json_response(await work)
    # A long poll ends as soon as its client goes away (Synapse cancels it too).
    response = await unless_disconnected(request, work)
    if response is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return json_response(response)


routes = [Route("/sync", sync, methods=["GET"])]
