"""What a user has on the server, read over the API, to check that a refused request (or
another user's) changed none of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tests.helpers import Api, User


def error_shape_ok(response: httpx.Response) -> bool:
    """A JSON object; an error one has a string `errcode` and `error`."""
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if response.status_code >= 400:
        return isinstance(body.get("errcode"), str) and isinstance(body.get("error"), str)
    return True


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 500, response.text
    return response.status_code, response.json()


def sync_view(api: Api, device: User) -> dict[str, Any]:
    """What an initial /sync shows a device of its user's own E2EE state: its queued to-device
    messages (an initial sync acknowledges none), global and room account data, its one-time-
    key counts and unused fallback key types."""
    response = api.get("sync", device, params={"timeout": "0"})
    assert response.status_code == 200, response.text
    body = response.json()
    return {
        "to_device": body.get("to_device", {}).get("events", []),
        "account_data": sorted(
            body.get("account_data", {}).get("events", []), key=lambda e: e["type"]
        ),
        "room_account_data": {
            room_id: sorted(room.get("account_data", {}).get("events", []),
                            key=lambda e: e["type"])
            for room_id, room in body.get("rooms", {}).get("join", {}).items()
        },
        "otk_counts": body.get("device_one_time_keys_count"),
        "unused_fallback": sorted(body.get("device_unused_fallback_key_types") or []),
    }


def snapshot(api: Api, user: User, sync_devices: Sequence[User] = ()) -> dict[str, Any]:
    """The user's backups (every version's info and keys), device keys and cross-signing keys,
    one-time-key counts and devices (without the last-seen fields every request updates);
    with `sync_devices` (logged-in devices of the user), also each one's `sync_view`."""
    state: dict[str, Any] = {}
    current = api.get("room_keys/version", user)
    state["backup"] = _ok(current)
    if current.status_code == 200:
        newest = int(current.json()["version"])
        for version in range(1, newest + 1):
            params = {"version": str(version)}
            state[f"backup/{version}"] = _ok(api.get(f"room_keys/version/{version}", user))
            state[f"backup/{version}/keys"] = _ok(api.get("room_keys/keys", user, params=params))
    query = api.post("keys/query", user, json={"device_keys": {user.user_id: []}})
    state["keys"] = _ok(query)
    state["otk_counts"] = _ok(api.post("keys/upload", user, json={}))
    devices = api.get("devices", user)
    assert devices.status_code == 200, devices.text
    state["devices"] = sorted(
        (
            {k: v for k, v in d.items() if k not in ("last_seen_ts", "last_seen_ip")}
            for d in devices.json()["devices"]
        ),
        key=lambda d: d["device_id"],
    )
    for device in sync_devices:
        state[f"sync/{device.device_id}"] = sync_view(api, device)
    return state
