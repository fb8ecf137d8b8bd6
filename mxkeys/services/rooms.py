"""Rooms: creating them, changing membership, sending and redacting events, and reading them
back with the requester's permissions checked.

Every event is built here in federation format, authorised against the room version's rules
and signed, inside the storage transaction that stores it (see `storage.rooms`).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from canonicaljson import encode_canonical_json

from mxkeys.errors import MatrixError, forbidden, not_found
from mxkeys.ids import now_ms, split_user_id
from mxkeys.services import event_auth
from mxkeys.services.event_format import hash_and_sign, redact
from mxkeys.services.notifier import Notifier
from mxkeys.services.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS, RoomVersion
from mxkeys.storage.accounts import AccountStore
from mxkeys.storage.rooms import (
    Membership,
    NewEvent,
    NewRoom,
    Persisted,
    RoomSnapshot,
    RoomStore,
    StateKey,
    StoredEvent,
)

MAX_PDU_BYTES = 65536
ProfileLookup = Callable[[str], Awaitable[tuple[str | None, str | None]]]

PRESETS: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join"},
    "public_chat": {"join_rule": "public", "history": "shared", "guest": "forbidden"},
}


@dataclass
class CreateRoomRequest:
    preset: str | None = None
    visibility: str = "private"
    name: str | None = None
    topic: str | None = None
    invite: list[str] = field(default_factory=list)
    initial_state: list[dict[str, Any]] = field(default_factory=list)
    is_direct: bool = False
    creation_content: dict[str, Any] = field(default_factory=dict)
    power_level_content_override: dict[str, Any] | None = None
    room_version: str | None = None


def auth_state_keys(event_type: str, sender: str, state_key: str | None,
                    content: dict[str, Any]) -> list[StateKey]:
    """The state the auth rules need for an event (spec: auth events selection)."""
    keys: list[StateKey] = [
        ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender),
        ("m.room.join_rules", ""),
    ]
    if event_type == "m.room.member" and state_key is not None:
        keys.append(("m.room.member", state_key))
        via = content.get("join_authorised_via_users_server")
        if isinstance(via, str):
            keys.append(("m.room.member", via))
    return keys


def _auth_event_ids(pdu: dict[str, Any], state: dict[StateKey, dict[str, Any]]) -> list[str]:
    wanted: list[StateKey] = [
        ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", pdu["sender"]),
    ]
    if pdu["type"] == "m.room.member":
        wanted.append(("m.room.member", pdu["state_key"]))
        membership = pdu["content"].get("membership")
        if membership in ("join", "invite", "knock"):
            wanted.append(("m.room.join_rules", ""))
        via = pdu["content"].get("join_authorised_via_users_server")
        if membership == "join" and isinstance(via, str):
            wanted.append(("m.room.member", via))
    ids: list[str] = []
    for key in wanted:
        event = state.get(key)
        if event is not None and event["event_id"] not in ids:
            ids.append(event["event_id"])
    return ids


class RoomService:
    def __init__(
        self,
        store: RoomStore,
        accounts: AccountStore,
        notifier: Notifier,
        server_name: str,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.notifier = notifier
        self.server_name = server_name
        self.signing_key: Any = None  # set at start-up (HomeServer.start)
        self.profile_of: ProfileLookup | None = None

    # -- building events -----------------------------------------------------------------

    def _builder(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        redacts: str | None = None,
        room_version: str | None = None,
    ) -> Callable[[RoomSnapshot], NewEvent]:
        def build(snapshot: RoomSnapshot) -> NewEvent:
            version_id = snapshot.room_version or room_version
            if version_id is None:
                raise not_found("Unknown room")
            version = ROOM_VERSIONS[version_id]
            event_content = dict(content)
            pdu: dict[str, Any] = {
                "auth_events": _auth_event_ids(
                    {"type": event_type, "sender": sender, "state_key": state_key,
                     "content": event_content},
                    snapshot.state,
                ),
                "content": event_content,
                "depth": snapshot.depth + 1,
                "origin_server_ts": now_ms(),
                "prev_events": [snapshot.prev_event_id] if snapshot.prev_event_id else [],
                "room_id": room_id,
                "sender": sender,
                "type": event_type,
            }
            if not version.v11_redactions:
                pdu["origin"] = self.server_name
            if state_key is not None:
                pdu["state_key"] = state_key
            redact_target = None
            if redacts is not None:
                if version.v11_redactions:
                    event_content["redacts"] = redacts
                else:
                    pdu["redacts"] = redacts
                redact_target = self._check_redaction(sender, redacts, snapshot, version)
            try:
                event_auth.check(pdu, snapshot.state, version)
            except event_auth.AuthError as e:
                raise forbidden(str(e)) from None
            event_id = hash_and_sign(pdu, version, self.server_name, self.signing_key)
            if len(encode_canonical_json(pdu)) > MAX_PDU_BYTES:
                raise MatrixError(413, "M_TOO_LARGE", "Event is larger than 64 KiB")
            return NewEvent(event_id, pdu, redact_target)

        return build

    def _check_redaction(
        self, sender: str, target_id: str, snapshot: RoomSnapshot, version: RoomVersion
    ) -> tuple[str, dict[str, Any]] | None:
        target = snapshot.events.get(target_id)
        if target is None:
            raise not_found("Unknown event")
        if target.sender != sender:
            levels = snapshot.state.get(("m.room.power_levels", ""))
            redact_level = 50
            if levels is not None and isinstance(levels["content"].get("redact"), int):
                redact_level = levels["content"]["redact"]
            if event_auth.user_power_level(snapshot.state, sender, version) < redact_level:
                raise forbidden("You may not redact other users' events")
        if target.redacted_by is not None:
            return None
        pdu = {k: v for k, v in target.pdu.items() if k != "event_id"}
        return target_id, redact(pdu, version)

    async def _persist(
        self,
        room_id: str,
        build: Callable[[RoomSnapshot], NewEvent],
        wanted_state: Sequence[StateKey],
        **kwargs: Any,
    ) -> Persisted:
        persisted = await self.store.persist_event(room_id, wanted_state, build, **kwargs)
        if persisted.notify:
            self.notifier.notify_users(persisted.notify, ["events"])
        return persisted

    async def send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        txn: tuple[str, str, str] | None = None,
        redacts: str | None = None,
        new_room: NewRoom | None = None,
    ) -> str:
        build = self._builder(
            sender, room_id, event_type, content, state_key, redacts,
            new_room.room_version if new_room else None,
        )
        wanted = auth_state_keys(event_type, sender, state_key, content)
        persisted = await self._persist(
            room_id, build, wanted, txn=txn, new_room=new_room,
            wanted_events=[redacts] if redacts else (),
        )
        return persisted.event.event_id

    # -- rooms and membership ------------------------------------------------------------

    async def _member_content(self, user_id: str, membership: str,
                              reason: str | None) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite") and self.profile_of is not None:
            displayname, avatar_url = await self.profile_of(user_id)
            if displayname is not None:
                content["displayname"] = displayname
            if avatar_url is not None:
                content["avatar_url"] = avatar_url
        if reason is not None:
            content["reason"] = reason
        return content

    async def create_room(self, creator: str, request: CreateRoomRequest) -> str:
        version_id = request.room_version or DEFAULT_ROOM_VERSION
        if version_id not in ROOM_VERSIONS:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id} is not supported"
            )
        version = ROOM_VERSIONS[version_id]
        preset_name = request.preset or (
            "public_chat" if request.visibility == "public" else "private_chat"
        )
        preset = PRESETS[preset_name]
        invitees = list(dict.fromkeys(request.invite))
        await self._check_invitees(invitees)

        room_id = "!" + "".join(secrets.choice(string.ascii_letters) for _ in range(18)) + (
            f":{self.server_name}"
        )
        create_content = {
            k: v for k, v in request.creation_content.items() if k not in ("creator",)
        }
        create_content["room_version"] = version_id
        if version.create_has_creator:
            create_content["creator"] = creator
        await self.send(
            creator, room_id, "m.room.create", create_content, state_key="",
            new_room=NewRoom(version_id, creator, request.visibility == "public", now_ms()),
        )
        await self.send(
            creator, room_id, "m.room.member",
            await self._member_content(creator, "join", None), state_key=creator,
        )
        levels: dict[str, Any] = {
            "users": {creator: 100},
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100,
                "m.room.history_visibility": 100, "m.room.canonical_alias": 50,
                "m.room.avatar": 50, "m.room.tombstone": 100, "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            # Synapse lets anyone invite in private rooms; 50 in public ones.
            "invite": 0 if preset_name != "public_chat" else 50,
            "historical": 100,
        }
        if preset_name == "trusted_private_chat":
            for invitee in invitees:
                levels["users"][invitee] = 100
        if request.power_level_content_override:
            levels.update(request.power_level_content_override)
        await self.send(creator, room_id, "m.room.power_levels", levels, state_key="")

        initial = {(e["type"], e.get("state_key", "")): e for e in request.initial_state}
        preset_events = [
            ("m.room.join_rules", {"join_rule": preset["join_rule"]}),
            ("m.room.history_visibility", {"history_visibility": preset["history"]}),
            ("m.room.guest_access", {"guest_access": preset["guest"]}),
        ]
        for event_type, content in preset_events:
            # initial_state wins over the preset (as in Synapse): skip what it sets itself.
            if (event_type, "") not in initial:
                await self.send(creator, room_id, event_type, content, state_key="")
        for event in request.initial_state:
            await self.send(
                creator, room_id, event["type"], event["content"],
                state_key=event.get("state_key", ""),
            )
        if request.name is not None:
            await self.send(creator, room_id, "m.room.name", {"name": request.name},
                            state_key="")
        if request.topic is not None:
            await self.send(creator, room_id, "m.room.topic", {"topic": request.topic},
                            state_key="")
        for invitee in invitees:
            content = await self._member_content(invitee, "invite", None)
            if request.is_direct:
                content["is_direct"] = True
            await self.send(creator, room_id, "m.room.member", content, state_key=invitee)
        return room_id

    async def _check_invitees(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            parts = split_user_id(user_id)
            if parts is None:
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user ID {user_id}")
            if parts[1] != self.server_name:
                raise forbidden("Inviting users on other servers needs federation")
        missing = [u for u in user_ids if not await self.accounts.user_exists(u)]
        if missing:
            raise not_found(f"Unknown user {missing[0]}")

    async def invite(self, sender: str, room_id: str, target: str, reason: str | None) -> None:
        await self._check_invitees([target])
        current = await self.store.get_membership(room_id, target)
        if current is not None and current.membership == "invite":
            return  # already invited: nothing changes (as Synapse)
        content = await self._member_content(target, "invite", reason)
        await self.send(sender, room_id, "m.room.member", content, state_key=target)

    async def join(self, user_id: str, room_id: str, reason: str | None = None) -> None:
        if room_id.startswith("#"):
            raise not_found("Room alias not found")
        if await self.store.get_room_version(room_id) is None:
            raise not_found("Unknown room")
        current = await self.store.get_membership(room_id, user_id)
        if current is not None and current.membership == "join":
            return
        content = await self._member_content(user_id, "join", reason)
        await self.send(user_id, room_id, "m.room.member", content, state_key=user_id)

    async def set_membership(
        self, sender: str, room_id: str, target: str, membership: str, reason: str | None
    ) -> None:
        """leave (own leave, kick, unban) and ban."""
        if split_user_id(target) is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
        if await self.store.get_room_version(room_id) is None:
            raise not_found("Unknown room")
        content = await self._member_content(target, membership, reason)
        await self.send(sender, room_id, "m.room.member", content, state_key=target)

    async def on_profile_change(
        self, user_id: str, displayname: str | None, avatar_url: str | None
    ) -> None:
        """Send a fresh join event with the new profile into each of the user's rooms."""
        for room_id in await self.joined_rooms(user_id):
            content: dict[str, Any] = {"membership": "join"}
            if displayname is not None:
                content["displayname"] = displayname
            if avatar_url is not None:
                content["avatar_url"] = avatar_url
            try:
                await self.send(user_id, room_id, "m.room.member", content, state_key=user_id)
            except MatrixError:
                # E.g. the user left meanwhile: their other rooms still get the update.
                continue

    async def forget(self, user_id: str, room_id: str) -> None:
        membership = await self.store.get_membership(room_id, user_id)
        if membership is None:
            return
        if membership.membership not in ("leave", "ban"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.store.forget(room_id, user_id)

    # -- reading -------------------------------------------------------------------------

    async def visibility_ceiling(self, user_id: str, room_id: str) -> int | None:
        """None if the user may read the room up to now; else the last position they may
        see (their leave or ban). 403 if they never were in it."""
        membership = await self.store.get_membership(room_id, user_id)
        if membership is None or membership.membership not in ("join", "leave", "ban"):
            raise forbidden("You are not a member of this room")
        if membership.membership == "join":
            return None
        if membership.membership == "leave" and await self._was_never_joined(membership):
            raise forbidden("You are not a member of this room")
        return membership.stream_ordering

    async def _was_never_joined(self, membership: Membership) -> bool:
        # A rejected invite leaves a "leave" without ever having joined; Synapse still shows
        # such users nothing but the invite. Approximation: a leave that replaced an invite.
        event = await self.store.get_event(membership.event_id)
        if event is None or event.replaces_state is None:
            return True
        previous = await self.store.get_event(event.replaces_state)
        return previous is None or previous.pdu["content"].get("membership") != "join"

    async def get_state(self, user_id: str, room_id: str) -> list[StoredEvent]:
        ceiling = await self.visibility_ceiling(user_id, room_id)
        return await self.store.get_state(room_id, at=ceiling)

    async def get_state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        ceiling = await self.visibility_ceiling(user_id, room_id)
        found = await self.store.get_state(room_id, at=ceiling, key=(event_type, state_key))
        if not found:
            raise not_found("Event not found")
        return found[0]

    async def get_event(self, user_id: str, room_id: str, event_id: str) -> StoredEvent:
        ceiling = await self.visibility_ceiling(user_id, room_id)
        event = await self.store.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or (ceiling is not None and event.stream_ordering > ceiling)
        ):
            raise not_found("Event not found")
        return event

    async def joined_rooms(self, user_id: str) -> list[str]:
        return [m.room_id for m in await self.store.get_user_memberships(user_id, ["join"])]

    async def members(
        self, user_id: str, room_id: str, at: int | None = None
    ) -> list[StoredEvent]:
        ceiling = await self.visibility_ceiling(user_id, room_id)
        if ceiling is not None:
            at = ceiling if at is None else min(at, ceiling)
        return await self.store.get_members(room_id, at)

    async def redactions_of(self, events: Sequence[StoredEvent]) -> dict[str, StoredEvent]:
        """The redaction events of the redacted ones among `events` (one query)."""
        return await self.store.get_events({e.redacted_by for e in events if e.redacted_by})
