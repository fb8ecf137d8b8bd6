"""Account data (account-data.yaml, modules/account_data.md): per-user JSON objects, global
or per room, delivered by `/sync` from the account data stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from mxkeys.errors import MatrixError, forbidden, invalid_param, not_found, too_large
from mxkeys.services.notifier import Notifier
from mxkeys.storage.account_data import AccountDataStore

# Types the server manages: clients may read them but not set them (405 M_BAD_JSON), globally
# and per room (spec "Server Behaviour" of the account data module; m.push_rules since v1.10).
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
PUSH_RULES_TYPE = "m.push_rules"
MAX_ID_BYTES = 255


def check_owner(requester_id: str, user_id: str) -> None:
    if requester_id != user_id:
        raise forbidden("Cannot access account data of other users")


def check_room_id(room_id: str) -> None:
    """A syntactically valid room ID: `!` then an opaque part (with `:server` before room
    version 12, without after), at most 255 bytes."""
    if (
        len(room_id) < 2
        or not room_id.startswith("!")
        or len(room_id.encode("utf-8")) > MAX_ID_BYTES
        or any(c.isspace() for c in room_id)
    ):
        raise invalid_param(f"{room_id} is not a valid room ID")


class AccountDataService:
    def __init__(
        self, store: AccountDataStore, notifier: Notifier, max_bytes: int | None = None
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.max_bytes = max_bytes  # the largest entry (its content as JSON) clients may set
        # What GET returns for global m.push_rules (the user's full rule set, stored or not,
        # as Synapse answers); set by the push rules service.
        self.push_rules_source: Callable[[str], Awaitable[dict[str, Any]]] | None = None

    async def put(
        self,
        user_id: str,
        room_id: str | None,
        data_type: str,
        content: dict[str, Any],
        *,
        by_server: bool = False,
    ) -> int:
        """Store an entry and wake the user's syncs; returns its stream position.

        Clients cannot set the server-managed types; the server itself (e.g. `/read_markers`
        for `m.fully_read`) passes `by_server=True`.
        """
        if not data_type or len(data_type) > MAX_ID_BYTES:
            raise invalid_param(f"Account data types are 1 to {MAX_ID_BYTES} characters")
        if not by_server and data_type in SERVER_MANAGED_TYPES:
            raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API.")
        if room_id is not None:
            check_room_id(room_id)
        encoded = msgspec.json.encode(content).decode()
        if not by_server and self.max_bytes is not None and len(encoded) > self.max_bytes:
            raise too_large(f"Account data may hold at most {self.max_bytes} bytes of JSON")
        position = await self.store.put(user_id, room_id, data_type, encoded)
        self.notifier.notify_users([user_id], ["account_data"])
        return position

    async def get_json(self, user_id: str, room_id: str | None, data_type: str) -> str:
        """The content as JSON text; 404 M_NOT_FOUND when nothing is stored."""
        if room_id is not None:
            check_room_id(room_id)
        if room_id is None and data_type == PUSH_RULES_TYPE and self.push_rules_source:
            # Always the current rule set, stored or default.
            return msgspec.json.encode(await self.push_rules_source(user_id)).decode()
        content = await self.store.get(user_id, room_id, data_type)
        if content is None:
            raise not_found("Room account data not found" if room_id else "Account data not found")
        return content

    async def get(self, user_id: str, room_id: str | None, data_type: str) -> dict[str, Any]:
        return msgspec.json.decode(await self.get_json(user_id, room_id, data_type))

    async def current_position(self) -> int:
        return await self.store.current_position()

    async def get_changes(
        self, user_id: str, from_pos: int, to_pos: int
    ) -> list[tuple[str | None, str, str]]:
        return await self.store.get_changes(user_id, from_pos, to_pos)
