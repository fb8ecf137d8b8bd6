"""`PUT /sendToDevice/{eventType}/{txnId}` (spec: to_device.yaml)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, path_param, requester


class SendToDeviceBody(msgspec.Struct):
    messages: dict[str, dict[str, dict[str, Any]]]


async def send_to_device(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, SendToDeviceBody)
    await homeserver(request).to_device.send(
        who, path_param(request, "event_type"), path_param(request, "txn_id"), body.messages
    )
    return json_response({})


routes = [
    Route("/sendToDevice/{event_type}/{txn_id}", send_to_device, methods=["PUT"]),
]
