"""Filters (filter.yaml, `definitions/sync_filter.yaml`, `room_event_filter.yaml`,
`event_filter.yaml`): validation, storage and the matching `/sync` and `/messages` apply.

Matching rules (spec "Filtering" and the filter definitions):
- `types`/`not_types` entries may use `*` as a wildcard for any sequence of characters,
  anywhere in the pattern (Synapse only honours a trailing `*`; the spec allows any).
- A `not_*` list always wins over its positive list; an absent positive list allows all.
- The top-level `room.rooms`/`room.not_rooms` apply before the per-section filters, which
  have their own `rooms`/`not_rooms` as well.
- `contains_url`: true keeps only events whose `content.url` is a string, false drops them.
- An event without a sender (e.g. an ephemeral event) never matches a `senders` list, as in
  Synapse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from mxkeys.errors import bad_json, invalid_param, not_json
from mxkeys.storage.filters import FilterStore

# Synapse's defaults: 10 timeline events when the filter sets no limit, and at most 100
# (its `filter_timeline_limit`) whatever the filter asks for.
DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 100

RoomIdStr = Annotated[str, msgspec.Meta(pattern="^!")]
UserIdStr = Annotated[str, msgspec.Meta(pattern="^@")]
# The spec asks clients for a limit > 0; 0 (an empty timeline, e.g. to skip history) is
# accepted as Synapse accepts it. Negative limits are refused.
Limit = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


# -- the filter definition, as uploaded ----------------------------------------------------
# Unknown keys are ignored (and kept in the stored JSON); wrong types are M_BAD_JSON.


class EventFilterModel(msgspec.Struct, kw_only=True):
    limit: Limit | None = None
    not_senders: list[UserIdStr] | None = None
    not_types: list[str] | None = None
    senders: list[UserIdStr] | None = None
    types: list[str] | None = None


class RoomEventFilterModel(EventFilterModel, kw_only=True):
    unread_thread_notifications: bool | None = None
    lazy_load_members: bool | None = None
    include_redundant_members: bool | None = None
    not_rooms: list[RoomIdStr] | None = None
    rooms: list[RoomIdStr] | None = None
    contains_url: bool | None = None


class RoomFilterModel(msgspec.Struct, kw_only=True):
    not_rooms: list[RoomIdStr] | None = None
    rooms: list[RoomIdStr] | None = None
    ephemeral: RoomEventFilterModel | None = None
    include_leave: bool | None = None
    state: RoomEventFilterModel | None = None
    timeline: RoomEventFilterModel | None = None
    account_data: RoomEventFilterModel | None = None


class FilterModel(msgspec.Struct, kw_only=True):
    event_fields: list[str] | None = None
    event_format: Literal["client", "federation"] | None = None
    presence: EventFilterModel | None = None
    account_data: EventFilterModel | None = None
    room: RoomFilterModel | None = None


def _convert(data: Any, model: type[Any], what: str) -> Any:
    if not isinstance(data, dict):
        raise bad_json(f"{what} must be a JSON object")
    try:
        return msgspec.convert(data, type=model)
    except msgspec.ValidationError as e:
        raise bad_json(f"Invalid {what}: {e}") from None


# -- matching ------------------------------------------------------------------------------


def _glob_regex(patterns: list[str]) -> re.Pattern[str]:
    alternatives = ("(?:" + ".*".join(map(re.escape, p.split("*"))) + ")" for p in patterns)
    return re.compile("|".join(alternatives), re.DOTALL)


class _Matcher:
    """Membership in a list of event types (with `*` wildcards) or of exact IDs."""

    def __init__(self, values: list[str], wildcards: bool) -> None:
        self._exact = frozenset(values)
        self._regex = (
            _glob_regex([v for v in values if "*" in v])
            if wildcards and any("*" in v for v in values)
            else None
        )

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if value in self._exact:
            return True
        return self._regex is not None and self._regex.fullmatch(value) is not None


def _matcher(values: list[str] | None, wildcards: bool = False) -> _Matcher | None:
    return None if values is None else _Matcher(values, wildcards)


def _allowed(value: str | None, allow: _Matcher | None, deny: _Matcher | None) -> bool:
    if deny is not None and value in deny:
        return False
    return allow is None or value in allow


class EventFilter:
    """An `EventFilter` (presence, global account data): types, senders and limit."""

    def __init__(self, model: EventFilterModel | None = None) -> None:
        model = model or EventFilterModel()
        self.limit: int | None = model.limit
        self._types = _matcher(model.types, wildcards=True)
        self._not_types = _matcher(model.not_types, wildcards=True)
        self._senders = _matcher(model.senders)
        self._not_senders = _matcher(model.not_senders)

    def allows_type(self, event_type: str | None) -> bool:
        return _allowed(event_type, self._types, self._not_types)

    def allows_sender(self, sender: str | None) -> bool:
        return _allowed(sender, self._senders, self._not_senders)

    def allows(self, event: Mapping[str, Any]) -> bool:
        return self.allows_type(event.get("type")) and self.allows_sender(event.get("sender"))


class RoomEventFilter(EventFilter):
    """A `RoomEventFilter`: a section of `room` in a sync filter, or `/messages?filter=`."""

    def __init__(self, model: RoomEventFilterModel | None = None) -> None:
        model = model or RoomEventFilterModel()
        super().__init__(model)
        self._rooms = _matcher(model.rooms)
        self._not_rooms = _matcher(model.not_rooms)
        self.contains_url: bool | None = model.contains_url
        self.lazy_load_members: bool = bool(model.lazy_load_members)
        self.include_redundant_members: bool = bool(model.include_redundant_members)
        self.unread_thread_notifications: bool = bool(model.unread_thread_notifications)

    @classmethod
    def from_json(cls, data: Any) -> RoomEventFilter:
        """Validate a decoded `RoomEventFilter` object (400 M_BAD_JSON if invalid)."""
        return cls(_convert(data, RoomEventFilterModel, "room event filter"))

    @classmethod
    def from_param(cls, param: str | None) -> RoomEventFilter:
        """The `filter` query parameter of `/messages` and `/context` (inline JSON only)."""
        if param is None or not param.strip():
            return cls()
        try:
            data = msgspec.json.decode(param)
        except msgspec.DecodeError:
            raise not_json("filter is not valid JSON") from None
        return cls.from_json(data)

    def allows_room(self, room_id: str | None) -> bool:
        """Unknown (None) rooms pass: the caller knows which room it is filtering."""
        return room_id is None or _allowed(room_id, self._rooms, self._not_rooms)

    def allows(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        if not super().allows(event):
            return False
        if not self.allows_room(room_id if room_id is not None else event.get("room_id")):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True


def split_field_path(path: str) -> list[str]:
    """Split a dot-separated property path (`\\.` and `\\\\` escape; appendix)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


class SyncFilter:
    """A whole filter, as `/sync` applies it."""

    def __init__(self, model: FilterModel | None = None) -> None:
        model = model or FilterModel()
        room = model.room or RoomFilterModel()
        self.model = model
        self._rooms = _matcher(room.rooms)
        self._not_rooms = _matcher(room.not_rooms)
        self.include_leave: bool = bool(room.include_leave)
        self.timeline = RoomEventFilter(room.timeline)
        self.state = RoomEventFilter(room.state)
        self.ephemeral = RoomEventFilter(room.ephemeral)
        self.room_account_data = RoomEventFilter(room.account_data)
        self.account_data = EventFilter(model.account_data)
        self.presence = EventFilter(model.presence)
        self.event_format: str = model.event_format or "client"
        self.event_fields: list[str] | None = model.event_fields
        self._field_paths = (
            None
            if model.event_fields is None
            else [split_field_path(f) for f in model.event_fields]
        )

    @classmethod
    def from_json(cls, data: Any) -> SyncFilter:
        """Validate a decoded filter definition (400 M_BAD_JSON if invalid)."""
        return cls(_convert(data, FilterModel, "filter"))

    @classmethod
    def default(cls) -> SyncFilter:
        return cls()

    @property
    def timeline_limit(self) -> int:
        limit = self.timeline.limit
        return DEFAULT_TIMELINE_LIMIT if limit is None else min(limit, MAX_TIMELINE_LIMIT)

    @property
    def lazy_load_members(self) -> bool:
        # `/sync` supports lazy-loading only on the `state` part of the room filter
        # (sync.yaml), as Synapse does.
        return self.state.lazy_load_members

    @property
    def include_redundant_members(self) -> bool:
        return self.state.include_redundant_members

    @property
    def unread_thread_notifications(self) -> bool:
        return self.timeline.unread_thread_notifications

    def allows_room(self, room_id: str) -> bool:
        """The top-level `room.rooms` / `room.not_rooms`."""
        return _allowed(room_id, self._rooms, self._not_rooms)

    def timeline_allows(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        return self.timeline.allows(event, room_id)

    def state_allows(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        return self.state.allows(event, room_id)

    def ephemeral_allows(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        return self.ephemeral.allows(event, room_id)

    def presence_allows(self, event: Mapping[str, Any]) -> bool:
        return self.presence.allows(event)

    def account_data_allows(self, data_type: str) -> bool:
        """Global account data (top-level `account_data`): filtered on type."""
        return self.account_data.allows_type(data_type)

    def room_account_data_allows(self, data_type: str, room_id: str | None = None) -> bool:
        """Room account data (`room.account_data`): filtered on type (and room, if given)."""
        return self.room_account_data.allows_type(data_type) and self.room_account_data.allows_room(
            room_id
        )

    def apply_event_fields(self, event: dict[str, Any]) -> dict[str, Any]:
        """Keep only the `event_fields` paths of a (client-format) event."""
        if self._field_paths is None:
            return event
        out: dict[str, Any] = {}
        for path in self._field_paths:
            source: Any = event
            for part in path:
                if not isinstance(source, dict) or part not in source:
                    break
                source = source[part]
            else:
                target = out
                for part in path[:-1]:
                    target = target.setdefault(part, {})
                target[path[-1]] = source
        return out


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self.store = store

    @staticmethod
    def validate(data: Any) -> SyncFilter:
        return SyncFilter.from_json(data)

    async def create(self, user_id: str, data: dict[str, Any]) -> str:
        SyncFilter.from_json(data)
        filter_id = await self.store.add(user_id, msgspec.json.encode(data).decode())
        return str(filter_id)

    async def get_json(self, user_id: str, filter_id: str) -> str | None:
        """The stored filter's JSON text, or None when the user has no such filter."""
        number = _parse_filter_id(filter_id)
        if number is None:
            return None
        return await self.store.get(user_id, number)

    async def resolve(self, user_id: str, param: str | None) -> SyncFilter:
        """The `filter` parameter of `/sync`: absent, inline JSON (starts with `{`) or the
        ID of one of the user's stored filters.

        As in Synapse: JSON that does not parse is 400 M_NOT_JSON, an invalid definition
        400 M_BAD_JSON, and an unknown filter ID 400 M_INVALID_PARAM.
        """
        if param is None or param == "":
            return SyncFilter.default()
        if param.startswith("{"):
            try:
                data = msgspec.json.decode(param)
            except msgspec.DecodeError:
                raise not_json("Filter is not valid JSON") from None
            return SyncFilter.from_json(data)
        stored = await self.get_json(user_id, param)
        if stored is None:
            raise invalid_param("No such filter")
        return SyncFilter.from_json(msgspec.json.decode(stored))


def _parse_filter_id(filter_id: str) -> int | None:
    if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:
        return None
    return int(filter_id)
