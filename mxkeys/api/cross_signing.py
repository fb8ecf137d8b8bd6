"""Cross-signing keys and signatures (spec: cross_signing.yaml)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, requester


class SigningKeysBody(msgspec.Struct):
    master_key: dict[str, Any] | None = None
    self_signing_key: dict[str, Any] | None = None
    user_signing_key: dict[str, Any] | None = None
    auth: Any = None


# user ID -> key ID (device ID or master public key) -> signed object
SignaturesBody = dict[str, dict[str, dict[str, Any]]]


async def upload_signing_keys(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, SigningKeysBody)
    await homeserver(request).cross_signing.upload_keys(
        who.user_id, body.master_key, body.self_signing_key, body.user_signing_key, body.auth
    )
    return json_response({})


async def upload_signatures(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, SignaturesBody)
    result = await homeserver(request).cross_signing.upload_signatures(who.user_id, body)
    return json_response(result)


routes = [
    Route("/keys/device_signing/upload", upload_signing_keys, methods=["POST"]),
    Route("/keys/signatures/upload", upload_signatures, methods=["POST"]),
]
