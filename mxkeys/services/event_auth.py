"""The authorization rules of room versions 10 and 11, for events created on this server.

`check(event, state, version)` decides whether `event` is allowed given the room's current
state (a map of (type, state_key) → event). Rules about signatures, rejected auth events and
third-party invites from other servers only matter once federation exists; everything a single
server can see is enforced: membership transitions, join rules, bans and power levels.
"""

from __future__ import annotations

from typing import Any

from mxkeys.ids import split_user_id
from mxkeys.services.room_versions import ROOM_VERSIONS, RoomVersion

StateMap = dict[tuple[str, str], dict[str, Any]]


class AuthError(Exception):
    """The event is not allowed; the message says which rule refused it."""


def _domain(identifier: str) -> str:
    """The server name of a user or room ID (everything after the first colon)."""
    return identifier.partition(":")[2]


def membership_of(state: StateMap, user_id: str) -> str:
    member = state.get(("m.room.member", user_id))
    return member["content"].get("membership", "leave") if member else "leave"


def _power_levels(state: StateMap) -> dict[str, Any] | None:
    event = state.get(("m.room.power_levels", ""))
    return event["content"] if event else None


def user_power_level(state: StateMap, user_id: str, version: RoomVersion) -> int:
    levels = _power_levels(state)
    if levels is None:
        create = state.get(("m.room.create", ""))
        if create is None:
            return 0
        creator = (
            create["content"].get("creator") if version.create_has_creator else create["sender"]
        )
        return 100 if creator == user_id else 0
    users = levels.get("users", {})
    if isinstance(users, dict) and user_id in users:
        return int(users[user_id])
    return int(levels.get("users_default", 0))


def _level(levels: dict[str, Any] | None, key: str, default: int) -> int:
    if levels is None:
        return default
    value = levels.get(key, default)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def required_level(state: StateMap, event_type: str, is_state: bool) -> int:
    levels = _power_levels(state)
    if levels is not None:
        events = levels.get("events", {})
        if isinstance(events, dict) and event_type in events:
            return int(events[event_type])
        if is_state:
            return _level(levels, "state_default", 50)
        return _level(levels, "events_default", 0)
    return 0


def check(event: dict[str, Any], state: StateMap, version: RoomVersion) -> None:
    event_type = event["type"]
    sender = event["sender"]
    if event_type == "m.room.create":
        if event.get("prev_events"):
            raise AuthError("create event has prev_events")
        if _domain(event["room_id"]) != _domain(sender):
            raise AuthError("create event sender is not of the room's server")
        room_version = event["content"].get("room_version", "1")
        if room_version not in ROOM_VERSIONS:
            raise AuthError("unknown room version")
        return
    create = state.get(("m.room.create", ""))
    if create is None:
        raise AuthError("no m.room.create event in the room")
    if create["content"].get("m.federate") is False and _domain(sender) != _domain(
        create["sender"]
    ):
        raise AuthError("room does not federate")
    if event_type == "m.room.member":
        _check_membership(event, state, version, create)
        return
    if membership_of(state, sender) != "join":
        raise AuthError("sender is not joined to the room")
    sender_level = user_power_level(state, sender, version)
    levels = _power_levels(state)
    if event_type == "m.room.third_party_invite":
        if sender_level < _level(levels, "invite", 0):
            raise AuthError("sender may not invite")
        return
    is_state = "state_key" in event
    if required_level(state, event_type, is_state) > sender_level:
        raise AuthError(f"sender's power level is too low to send {event_type}")
    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("state_key names another user")
    if event_type == "m.room.power_levels":
        _check_power_levels(event["content"], levels, sender, sender_level)


def _check_membership(
    event: dict[str, Any], state: StateMap, version: RoomVersion, create: dict[str, Any]
) -> None:
    content = event["content"]
    target = event.get("state_key")
    membership = content.get("membership")
    if not isinstance(target, str) or not isinstance(membership, str):
        raise AuthError("member event without state_key or membership")
    sender = event["sender"]
    levels = _power_levels(state)
    join_rules = state.get(("m.room.join_rules", ""))
    join_rule = join_rules["content"].get("join_rule", "invite") if join_rules else "invite"
    sender_membership = membership_of(state, sender)
    target_membership = membership_of(state, target)

    if membership == "join":
        prev_events = event.get("prev_events", [])
        creator = create["content"].get("creator") if version.create_has_creator else (
            create["sender"]
        )
        if len(prev_events) == 1 and prev_events[0] == create["event_id"] and target == creator:
            return
        if sender != target:
            raise AuthError("cannot join on behalf of another user")
        if target_membership == "ban":
            raise AuthError("user is banned from the room")
        if join_rule in ("invite", "knock"):
            if target_membership in ("invite", "join"):
                return
            raise AuthError("room is invite-only")
        if join_rule in ("restricted", "knock_restricted"):
            if target_membership in ("invite", "join"):
                return
            authoriser = content.get("join_authorised_via_users_server")
            if not isinstance(authoriser, str) or membership_of(state, authoriser) != "join":
                raise AuthError("restricted join not authorised")
            if user_power_level(state, authoriser, version) < _level(levels, "invite", 0):
                raise AuthError("restricted join authoriser may not invite")
            return
        if join_rule == "public":
            return
        raise AuthError("join rule does not allow joining")
    if membership == "invite":
        if "third_party_invite" in content:
            raise AuthError("third-party invites are not supported")
        if sender_membership != "join":
            raise AuthError("inviter is not joined to the room")
        if target_membership in ("join", "ban"):
            raise AuthError(f"invitee's membership is already {target_membership}")
        if user_power_level(state, sender, version) >= _level(levels, "invite", 0):
            return
        raise AuthError("sender's power level is too low to invite")
    if membership == "leave":
        if sender == target:
            if target_membership in ("invite", "join", "knock"):
                return
            raise AuthError("user is not in the room")
        if sender_membership != "join":
            raise AuthError("sender is not joined to the room")
        sender_level = user_power_level(state, sender, version)
        if target_membership == "ban" and sender_level < _level(levels, "ban", 50):
            raise AuthError("sender's power level is too low to unban")
        if sender_level >= _level(levels, "kick", 50) and user_power_level(
            state, target, version
        ) < sender_level:
            return
        raise AuthError("sender's power level is too low to kick this user")
    if membership == "ban":
        if sender_membership != "join":
            raise AuthError("sender is not joined to the room")
        sender_level = user_power_level(state, sender, version)
        if sender_level >= _level(levels, "ban", 50) and user_power_level(
            state, target, version
        ) < sender_level:
            return
        raise AuthError("sender's power level is too low to ban this user")
    if membership == "knock":
        if join_rule not in ("knock", "knock_restricted"):
            raise AuthError("room does not allow knocking")
        if sender != target:
            raise AuthError("cannot knock on behalf of another user")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise AuthError("user cannot knock in this membership state")
    raise AuthError(f"unknown membership {membership!r}")


_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick",
               "invite")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_power_levels(
    new: dict[str, Any], old: dict[str, Any] | None, sender: str, sender_level: int
) -> None:
    for key in _LEVEL_KEYS:
        if key in new and not _is_int(new[key]):
            raise AuthError(f"power level {key} is not an integer")
    for key in ("events", "notifications"):
        if key in new and not (
            isinstance(new[key], dict) and all(_is_int(v) for v in new[key].values())
        ):
            raise AuthError(f"power levels {key} must map to integers")
    users = new.get("users", {})
    if not isinstance(users, dict) or not all(
        split_user_id(u) is not None and _is_int(v) for u, v in users.items()
    ):
        raise AuthError("power levels users must map user IDs to integers")
    if old is None:
        return
    for key in _LEVEL_KEYS:
        old_value, new_value = old.get(key), new.get(key)
        if old_value == new_value:
            continue
        if old_value is not None and int(old_value) > sender_level:
            raise AuthError(f"cannot change {key} from above your own level")
        if new_value is not None and new_value > sender_level:
            raise AuthError(f"cannot raise {key} above your own level")
    for key in ("events", "notifications"):
        old_map = old.get(key, {}) if isinstance(old.get(key), dict) else {}
        new_map = new.get(key, {})
        for name in set(old_map) | set(new_map):
            if old_map.get(name) == new_map.get(name):
                continue
            if name in old_map and int(old_map[name]) > sender_level:
                raise AuthError(f"cannot change {key}.{name} from above your own level")
            if name in new_map and new_map[name] > sender_level:
                raise AuthError(f"cannot raise {key}.{name} above your own level")
    old_users = old.get("users", {}) if isinstance(old.get("users"), dict) else {}
    for user in set(old_users) | set(users):
        if old_users.get(user) == users.get(user):
            continue
        if user != sender and user in old_users and int(old_users[user]) >= sender_level:
            raise AuthError("cannot change the level of a user at or above your own")
        if user in users and users[user] > sender_level:
            raise AuthError("cannot raise a user above your own level")
