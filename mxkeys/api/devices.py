"""Device management (spec: `device_management.yaml`)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import (
    homeserver,
    json_body,
    json_response,
    optional_json_body,
    path_param,
    requester,
)
from mxkeys.services.uia import PASSWORD, UiaRequest
from mxkeys.storage.accounts import Device

DELETE_FLOWS = [[PASSWORD]]


class UpdateDeviceBody(msgspec.Struct):
    display_name: str | None = None


class DeleteDeviceBody(msgspec.Struct):
    auth: Any = None


class DeleteDevicesBody(msgspec.Struct):
    devices: list[str]
    auth: Any = None


def device_json(device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": device.device_id}
    if device.display_name is not None:
        out["display_name"] = device.display_name
    if device.last_seen_ts is not None:
        out["last_seen_ts"] = device.last_seen_ts
    if device.last_seen_ip is not None:
        out["last_seen_ip"] = device.last_seen_ip
    return out


async def list_devices(request: Request) -> Response:
    who = await requester(request)
    devices = await homeserver(request).devices.list_devices(who.user_id)
    return json_response({"devices": [device_json(d) for d in devices]})


async def get_device(request: Request) -> Response:
    who = await requester(request)
    device = await homeserver(request).devices.get_device(
        who.user_id, path_param(request, "device_id")
    )
    return json_response(device_json(device))


async def update_device(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, UpdateDeviceBody)
    await homeserver(request).devices.rename(
        who.user_id, path_param(request, "device_id"), body.display_name
    )
    return json_response({})


async def delete_device(request: Request) -> Response:
    hs = homeserver(request)
    who = await requester(request)
    device_id = path_param(request, "device_id")
    body = await optional_json_body(request, DeleteDeviceBody, DeleteDeviceBody())
    await hs.uia.authenticate(
        UiaRequest("DELETE", f"devices/{device_id}", who.user_id), body.auth, DELETE_FLOWS
    )
    # Deleting an unknown (or already deleted) device succeeds, as the spec says.
    await hs.devices.delete_devices(who.user_id, [device_id])
    return json_response({})


async def delete_devices(request: Request) -> Response:
    hs = homeserver(request)
    who = await requester(request)
    body = await json_body(request, DeleteDevicesBody)
    await hs.uia.authenticate(
        UiaRequest("POST", "delete_devices", who.user_id), body.auth, DELETE_FLOWS
    )
    await hs.devices.delete_devices(who.user_id, body.devices)
    return json_response({})


routes = [
    Route("/devices", list_devices, methods=["GET"]),
    Route("/devices/{device_id}", get_device, methods=["GET"]),
    Route("/devices/{device_id}", update_device, methods=["PUT"]),
    Route("/devices/{device_id}", delete_device, methods=["DELETE"]),
    Route("/delete_devices", delete_devices, methods=["POST"]),
]
