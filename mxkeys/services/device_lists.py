"""Device-list tracking (spec: "Tracking the device list for a user", "Extensions to /sync"):
`device_lists` and the one-time/fallback key counts in `/sync`, `/keys/changes`, and waking
the syncs of everyone who shares a room with a user whose devices or keys changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from mxkeys.errors import invalid_param
from mxkeys.services.auth import Requester
from mxkeys.services.notifier import Notifier
from mxkeys.services.sync import SyncContext, SyncToken, future_token
from mxkeys.storage.device_keys import DeviceKeysStore
from mxkeys.storage.device_lists import DeviceListStore


class DeviceListService:
    stream = "device_lists"

    def __init__(
        self, store: DeviceListStore, keys: DeviceKeysStore, notifier: Notifier
    ) -> None:
        self.store = store
        self.keys = keys
        self.notifier = notifier

    async def changed(self, user_ids: Iterable[str]) -> None:
        """Wake these users and everyone sharing a room with them (after the change
        committed)."""
        wake: set[str] = set()
        for user_id in user_ids:
            wake |= await self.store.users_sharing_rooms(user_id)
        self.notifier.notify_users(sorted(wake), [self.stream])

    def committed(self, user_ids: set[str]) -> None:
        """Database commit hook (runs in a storage thread): schedule the wake-up."""
        loop = self.notifier.loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.changed(user_ids), loop)

    async def current_position(self) -> int:
        return await self.keys.current_device_list_position()

    async def fill(
        self, who: Requester, since: int | None, response: dict[str, Any],
        sync_filter: Any, context: SyncContext,
    ) -> tuple[bool, int]:
        # device_lists are only reported by incremental syncs.
        incremental = since is not None and context.events_since is not None
        data = await self.store.sync_data(
            who.user_id, who.device_id, since if incremental else None,
            context.events_since if incremental else None, context.events_upto,
        )
        if since is not None and since > data.position:
            raise future_token()
        # Clients top up their one-time keys from this count: always say signed_curve25519.
        response["device_one_time_keys_count"] = {
            "signed_curve25519": 0, **data.one_time_key_counts
        }
        response["device_unused_fallback_key_types"] = data.unused_fallback_key_types
        response["device_lists"] = {"changed": sorted(data.changed), "left": sorted(data.left)}
        return bool(data.changed or data.left), data.position

    async def keys_changes(self, user_id: str, from_token: str, to_token: str) -> dict[str, Any]:
        """`GET /keys/changes`: the same answer as /sync's device_lists between two tokens."""
        start = SyncToken.parse(from_token)
        end = SyncToken.parse(to_token)
        if start.get("device_lists") > end.get("device_lists") or start.get(
            "events"
        ) > end.get("events"):
            raise invalid_param("'from' is after 'to'")
        changed, left = await self.store.changes_for(
            user_id,
            start.get("device_lists"),
            end.get("device_lists"),
            start.get("events"),
            end.get("events"),
        )
        return {"changed": sorted(changed), "left": sorted(left)}
