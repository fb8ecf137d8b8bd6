"""What a user has on the server, read over the API, to check that a refused request (or
another user's) changed none of it."""

from __future__ import annotations

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


def snapshot(api: Api, user: User) -> dict[str, Any]:
    """The user's backups (every version's info and keys), device keys and cross-signing keys,
    one-time-key counts and devices (without the last-seen fields every request updates)."""
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
    return state
