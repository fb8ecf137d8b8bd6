"""The account data stream's part of `/sync`."""

from __future__ import annotations

from typing import Any

import msgspec

from mxkeys.services.account_data import PUSH_RULES_TYPE, AccountDataService
from mxkeys.services.auth import Requester
from mxkeys.services.sync import SyncContext, future_token, room_account_data_into


class AccountDataSource:
    stream = "account_data"

    def __init__(self, account_data: AccountDataService) -> None:
        self.account_data = account_data

    async def current_position(self) -> int:
        return await self.account_data.current_position()

    async def fill(
        self, who: Requester, since: int | None, response: dict[str, Any],
        sync_filter: Any, context: SyncContext,
    ) -> tuple[bool, int]:
        upto, changes = await self.account_data.store.changes_since(who.user_id, since or 0)
        if since is not None and since > upto:
            raise future_token()
        global_events: list[dict[str, Any]] = []
        by_room: dict[str, list[dict[str, Any]]] = {}
        for room_id, data_type, content in changes:
            event = {"type": data_type, "content": msgspec.Raw(content)}
            if room_id is None:
                if sync_filter.account_data_allows(data_type):
                    global_events.append(event)
            elif sync_filter.allows_room(room_id) and sync_filter.room_account_data_allows(
                data_type, room_id
            ):
                by_room.setdefault(room_id, []).append(event)
        news = bool(global_events or by_room)
        source = self.account_data.push_rules_source
        if since is None and source is not None and sync_filter.account_data_allows(
            PUSH_RULES_TYPE
        ):
            # Clients read their push rules from the initial sync even if never changed; the
            # rule set is built fresh so new server defaults show up.
            global_events = [e for e in global_events if e["type"] != PUSH_RULES_TYPE]
            global_events.append({"type": PUSH_RULES_TYPE, "content": await source(who.user_id)})
        response["account_data"]["events"] = global_events
        for room_id, events in by_room.items():
            room_account_data_into(response, room_id, events)
        return news, upto
