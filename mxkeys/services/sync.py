"""`/sync`: initial and incremental syncs, long-polling through the notifier.

A sync token names a position on each stream the server keeps, in a fixed order:
`s<events>_<account data>_<device lists>_<to-device>`. Rooms come from the events stream;
the other streams plug in as `SyncSource`s that add their part of the response.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mxkeys.errors import MatrixError
from mxkeys.services.auth import Requester
from mxkeys.services.client_events import client_event, stripped_event
from mxkeys.services.notifier import ALL_STREAMS, Notifier
from mxkeys.services.rooms import RoomService
from mxkeys.storage.rooms import FutureToken, SyncRoom, load_sync_rooms

STREAMS = ("events", "account_data", "device_lists", "to_device")
MAX_TIMEOUT_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class SyncToken:
    positions: tuple[int, ...]

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        parts = token[1:].split("_") if token.startswith("s") else []
        if len(parts) != len(STREAMS) or not all(p.isdigit() and len(p) < 19 for p in parts):
            raise MatrixError(400, "M_INVALID_PARAM", "Malformed sync token")
        return cls(tuple(int(p) for p in parts))

    def __str__(self) -> str:
        return "s" + "_".join(str(p) for p in self.positions)

    def get(self, stream: str) -> int:
        return self.positions[STREAMS.index(stream)]


def future_token() -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", "Sync token is ahead of this server")


@dataclass(frozen=True, slots=True)
class SyncContext:
    """What every source may need besides its own stream's range."""

    events_since: int | None
    events_upto: int


class SyncSource(Protocol):
    """One stream's part of /sync (account data, device lists, to-device...)."""

    stream: str

    async def current_position(self) -> int: ...

    async def fill(
        self, who: Requester, since: int | None, response: dict[str, Any],
        sync_filter: Any, context: SyncContext,
    ) -> tuple[bool, int]:
        """Add this stream's news after `since` (everything when None) to `response`, reading
        the stream's position with its data. Returns whether there was any news, and the
        position the next sync continues from (the stream's position, or less when the
        source capped its part of the response). A `since` ahead of the stream's position
        raises `future_token()`."""
        ...


class SyncService:
    def __init__(self, rooms: RoomService, notifier: Notifier) -> None:
        self.rooms = rooms
        self.notifier = notifier
        self.sources: dict[str, SyncSource] = {}

    def add_source(self, source: SyncSource) -> None:
        self.sources[source.stream] = source

    async def current_token(self) -> SyncToken:
        positions = [await self.rooms.store.current_position()]
        for stream in STREAMS[1:]:
            source = self.sources.get(stream)
            positions.append(await source.current_position() if source else 0)
        return SyncToken(tuple(positions))

    async def sync(
        self,
        who: Requester,
        since: str | None,
        timeout_ms: int,
        sync_filter: Any,
        full_state: bool = False,
    ) -> dict[str, Any]:
        token = SyncToken.parse(since) if since else None
        deadline = time.monotonic() + min(max(timeout_ms, 0), MAX_TIMEOUT_MS) / 1000
        seen = self.notifier.counter(who.user_id)
        response, has_news, positions, context = await self._build(
            who, token, sync_filter, full_state
        )
        while True:
            remaining = deadline - time.monotonic()
            if token is None or full_state or has_news or remaining <= 0:
                break
            streams = await self.notifier.wait(who.user_id, seen, remaining)
            if streams is None:
                break
            seen = self.notifier.counter(who.user_id)
            if ALL_STREAMS in streams or "events" in streams:
                response, has_news, positions, context = await self._build(
                    who, token, sync_filter, full_state
                )
                continue
            # Only side streams changed: refresh just those parts of the response.
            for index, stream in enumerate(STREAMS):
                source = self.sources.get(stream)
                if stream in streams and source is not None:
                    news, positions[index] = await self._fill(
                        source, who, token, response, sync_filter, context
                    )
                    has_news = has_news or news
        response["next_batch"] = str(SyncToken(tuple(positions)))
        return response

    async def _fill(
        self,
        source: SyncSource,
        who: Requester,
        token: SyncToken | None,
        response: dict[str, Any],
        sync_filter: Any,
        context: SyncContext,
    ) -> tuple[bool, int]:
        since = token.get(source.stream) if token else None
        return await source.fill(who, since, response, sync_filter, context)

    async def _build(
        self, who: Requester, token: SyncToken | None, sync_filter: Any, full_state: bool
    ) -> tuple[dict[str, Any], bool, list[int], SyncContext]:
        limit = sync_filter.timeline_limit
        try:
            data = await load_sync_rooms(
                self.rooms.store,
                who.user_id,
                token.get("events") if token else None,
                limit,
                full_state,
                sync_filter.include_leave,
                sync_filter.allows_room,
            )
        except FutureToken:
            raise future_token() from None
        positions = [data.position]
        response: dict[str, Any] = {
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
        }
        has_news = bool(data.joined or data.left or data.invited)
        redactions = await self.rooms.redactions_of(
            [e for room in [*data.joined, *data.left] for e in room.timeline]
        )
        viewer = (who.user_id, who.device_id)
        for room in data.joined:
            room_id = room.membership.room_id
            entry = self._room_entry(room, viewer, redactions, sync_filter, who.user_id)
            counts = data.counts.get(room_id, {})
            entry["summary"] = {
                "m.heroes": data.heroes.get(room_id, []),
                "m.joined_member_count": counts.get("join", 0),
                "m.invited_member_count": counts.get("invite", 0),
            }
            entry["ephemeral"] = {"events": []}
            entry["unread_notifications"] = {"highlight_count": 0, "notification_count": 0}
            response["rooms"]["join"][room_id] = entry
        for room in data.left:
            entry = self._room_entry(room, viewer, redactions, sync_filter, who.user_id)
            response["rooms"]["leave"][room.membership.room_id] = entry
        for membership, state in data.invited:
            response["rooms"]["invite"][membership.room_id] = {
                "invite_state": {"events": [stripped_event(e) for e in state]}
            }
        context = SyncContext(token.get("events") if token else None, data.position)
        for stream in STREAMS[1:]:
            source = self.sources.get(stream)
            if source is None:
                positions.append(0)
                continue
            news, reached = await self._fill(source, who, token, response, sync_filter, context)
            has_news = has_news or news
            positions.append(reached)
        return response, has_news, positions, context

    def _room_entry(
        self,
        room: SyncRoom,
        viewer: tuple[str, str],
        redactions: dict[str, Any],
        sync_filter: Any,
        user_id: str,
    ) -> dict[str, Any]:
        timeline = [e for e in room.timeline if sync_filter.timeline_allows(e.pdu)]
        state = [e for e in room.state if sync_filter.state_allows(e.pdu)]
        if sync_filter.lazy_load_members and room.full_state:
            wanted = {e.sender for e in timeline} | {user_id}
            state = [e for e in state if e.type != "m.room.member" or e.state_key in wanted]
        now = int(time.time() * 1000)
        first = room.timeline[0].stream_ordering if room.timeline else None
        prev_batch = self.pagination_token(first - 1 if first is not None else
                                           room.membership.stream_ordering)
        return {
            "timeline": {
                "events": [
                    client_event(e, viewer, redactions, include_room_id=False, now=now)
                    for e in timeline
                ],
                "limited": room.limited,
                "prev_batch": prev_batch,
            },
            "state": {
                "events": [client_event(e, None, redactions, include_room_id=False, now=now)
                           for e in state]
            },
            "account_data": {"events": []},
        }

    @staticmethod
    def pagination_token(position: int) -> str:
        return f"t{max(position, 0)}"


def parse_pagination_token(token: str) -> int:
    """A `/messages` position from a pagination token or a sync token."""
    if token.startswith("t") and token[1:].isdigit() and len(token) < 20:
        return int(token[1:])
    if token.startswith("s"):
        return SyncToken.parse(token).get("events")
    raise MatrixError(400, "M_INVALID_PARAM", "Malformed pagination token")


def room_account_data_into(
    response: dict[str, Any], room_id: str, events: Sequence[dict[str, Any]]
) -> None:
    """Room account data goes under the room, when the room is in the response."""
    for section in ("join", "leave"):
        entry = response["rooms"][section].get(room_id)
        if entry is not None:
            entry["account_data"]["events"].extend(events)
            return
    response["rooms"]["join"].setdefault(
        room_id,
        {
            "timeline": {"events": [], "limited": False},
            "state": {"events": []},
            "account_data": {"events": []},
            "ephemeral": {"events": []},
        },
    )["account_data"]["events"].extend(events)
