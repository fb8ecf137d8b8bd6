"""Device management: listing, renaming, deleting (with everything stored per device)."""

from __future__ import annotations

from collections.abc import Sequence

from mxkeys.errors import not_found
from mxkeys.storage.accounts import AccountStore, Device


class DeviceService:
    def __init__(self, accounts: AccountStore) -> None:
        self.accounts = accounts

    async def list_devices(self, user_id: str) -> list[Device]:
        return await self.accounts.list_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> Device:
        device = await self.accounts.get_device(user_id, device_id)
        if device is None:
            raise not_found("Unknown device")
        return device

    async def rename(self, user_id: str, device_id: str, display_name: str | None) -> None:
        if not await self.accounts.set_device_display_name(user_id, device_id, display_name):
            raise not_found("Unknown device")

    async def delete_devices(self, user_id: str, device_ids: Sequence[str] | None) -> list[str]:
        """Delete devices (all when None): their tokens, keys and queued messages go too."""
        return await self.accounts.delete_devices(user_id, device_ids)
