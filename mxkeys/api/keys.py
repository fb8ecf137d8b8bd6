"""Device keys: upload, query and claim (spec: keys.yaml)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import homeserver, json_body, json_response, requester

Timeout = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


class UploadBody(msgspec.Struct):
    device_keys: dict[str, Any] | None = None
    # Raw: each key is validated and stored as sent, not decoded into Python objects.
    one_time_keys: dict[str, msgspec.Raw] | None = None
    fallback_keys: dict[str, msgspec.Raw] | None = None


class QueryBody(msgspec.Struct):
    device_keys: dict[str, list[str]]
    timeout: Timeout | None = None  # for remote servers; none are asked yet


class ClaimBody(msgspec.Struct):
    one_time_keys: dict[str, dict[str, str]]
    timeout: Timeout | None = None


async def upload_keys(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, UploadBody)
    counts = await homeserver(request).keys.upload(
        who.user_id, who.device_id, body.device_keys, body.one_time_keys, body.fallback_keys
    )
    return json_response({"one_time_key_counts": counts})


async def query_keys(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, QueryBody)
    return json_response(await homeserver(request).keys.query(who.user_id, body.device_keys))


async def claim_keys(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, ClaimBody)
    return json_response(await homeserver(request).keys.claim(who.user_id, body.one_time_keys))


routes = [
    Route("/keys/upload", upload_keys, methods=["POST"]),
    Route("/keys/query", query_keys, methods=["POST"]),
    Route("/keys/claim", claim_keys, methods=["POST"]),
]
