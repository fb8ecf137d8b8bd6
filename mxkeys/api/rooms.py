"""Rooms: creation, membership, sending, state, members, history, redaction
(spec: create_room.yaml, joining/inviting/leaving/kicking/banning.yaml, room_send.yaml,
room_state.yaml, rooms.yaml, message_pagination.yaml, list_joined_rooms.yaml, redaction.yaml).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mxkeys.api.http import (
    homeserver,
    json_body,
    json_response,
    optional_json_body,
    path_param,
    query_param,
    requester,
)
from mxkeys.errors import MatrixError, forbidden, invalid_param
from mxkeys.ids import split_user_id
from mxkeys.services.client_events import client_event
from mxkeys.services.filtering import RoomEventFilter
from mxkeys.services.rooms import CreateRoomRequest
from mxkeys.services.sync import parse_pagination_token

MAX_MESSAGES_LIMIT = 1000


class StateEventBody(msgspec.Struct):
    type: str
    content: dict[str, Any]
    state_key: str = ""


class CreateRoomBody(msgspec.Struct):
    visibility: Literal["public", "private"] = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = []
    invite_3pid: list[dict[str, Any]] = []
    room_version: str | None = None
    creation_content: dict[str, Any] = {}
    initial_state: list[StateEventBody] = []
    preset: Literal["private_chat", "public_chat", "trusted_private_chat"] | None = None
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


class TargetBody(msgspec.Struct):
    user_id: str
    reason: str | None = None


class ReasonBody(msgspec.Struct):
    reason: str | None = None


def room_id_param(request: Request) -> str:
    room_id = path_param(request, "room_id")
    if not room_id.startswith("!") or ":" not in room_id:
        raise invalid_param("Invalid room ID")
    return room_id


async def create_room(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, CreateRoomBody)
    if body.room_alias_name is not None:
        raise invalid_param("Room aliases are not supported by this server yet")
    if body.invite_3pid:
        raise invalid_param("Third-party invites are not supported by this server")
    for user_id in body.invite:
        if split_user_id(user_id) is None:
            raise invalid_param(f"Invalid user ID in invite: {user_id}")
    room_id = await homeserver(request).rooms.create_room(
        who.user_id,
        CreateRoomRequest(
            preset=body.preset,
            visibility=body.visibility,
            name=body.name,
            topic=body.topic,
            invite=body.invite,
            initial_state=[
                {"type": e.type, "state_key": e.state_key, "content": e.content}
                for e in body.initial_state
            ],
            is_direct=body.is_direct,
            creation_content=body.creation_content,
            power_level_content_override=body.power_level_content_override,
            room_version=body.room_version,
        ),
    )
    return json_response({"room_id": room_id})


async def invite(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, TargetBody)
    await homeserver(request).rooms.invite(
        who.user_id, room_id_param(request), body.user_id, body.reason
    )
    return json_response({})


async def join_room_id(request: Request) -> Response:
    who = await requester(request)
    room_id = room_id_param(request)
    body = await optional_json_body(request, ReasonBody, ReasonBody())
    await homeserver(request).rooms.join(who.user_id, room_id, body.reason)
    return json_response({"room_id": room_id})


async def join_room_or_alias(request: Request) -> Response:
    who = await requester(request)
    target = path_param(request, "room_id_or_alias")
    if not target.startswith(("!", "#")):
        raise invalid_param("Expected a room ID or a room alias")
    body = await optional_json_body(request, ReasonBody, ReasonBody())
    await homeserver(request).rooms.join(who.user_id, target, body.reason)
    return json_response({"room_id": target})


async def leave(request: Request) -> Response:
    who = await requester(request)
    room_id = room_id_param(request)
    body = await optional_json_body(request, ReasonBody, ReasonBody())
    hs = homeserver(request)
    membership = await hs.rooms.store.get_membership(room_id, who.user_id)
    if membership is None and await hs.rooms.store.get_room_version(room_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
    await hs.rooms.set_membership(who.user_id, room_id, who.user_id, "leave", body.reason)
    return json_response({})


async def _moderate(request: Request, membership: str, required: tuple[str, ...]) -> Response:
    who = await requester(request)
    room_id = room_id_param(request)
    body = await json_body(request, TargetBody)
    hs = homeserver(request)
    current = await hs.rooms.store.get_membership(room_id, body.user_id)
    if required and (current is None or current.membership not in required):
        raise forbidden(f"The user's membership is not {' or '.join(required)}")
    await hs.rooms.set_membership(who.user_id, room_id, body.user_id, membership, body.reason)
    return json_response({})


async def kick(request: Request) -> Response:
    return await _moderate(request, "leave", ("join", "invite", "knock"))


async def ban(request: Request) -> Response:
    return await _moderate(request, "ban", ())


async def unban(request: Request) -> Response:
    return await _moderate(request, "leave", ("ban",))


async def forget(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).rooms.forget(who.user_id, room_id_param(request))
    return json_response({})


async def joined_rooms(request: Request) -> Response:
    who = await requester(request)
    rooms = await homeserver(request).rooms.joined_rooms(who.user_id)
    return json_response({"joined_rooms": rooms})


async def send(request: Request) -> Response:
    who = await requester(request)
    room_id = room_id_param(request)
    content = await json_body(request, dict[str, Any])
    event_id = await homeserver(request).rooms.send(
        who.user_id,
        room_id,
        path_param(request, "event_type"),
        content,
        txn=(who.user_id, who.device_id, path_param(request, "txn_id")),
    )
    return json_response({"event_id": event_id})


def _state_key(request: Request) -> str:
    return path_param(request, "state_key") if "state_key" in request.path_params else ""


async def put_state(request: Request) -> Response:
    who = await requester(request)
    room_id = room_id_param(request)
    content = await json_body(request, dict[str, Any])
    event_id = await homeserver(request).rooms.send(
        who.user_id, room_id, path_param(request, "event_type"), content,
        state_key=_state_key(request),
    )
    return json_response({"event_id": event_id})


async def get_state_event(request: Request) -> Response:
    who = await requester(request)
    event = await homeserver(request).rooms.get_state_event(
        who.user_id, room_id_param(request), path_param(request, "event_type"),
        _state_key(request),
    )
    if query_param(request, "format") == "event":
        return json_response(client_event(event))
    return json_response(event.pdu.get("content", {}))


async def get_state(request: Request) -> Response:
    who = await requester(request)
    state = await homeserver(request).rooms.get_state(who.user_id, room_id_param(request))
    return json_response([client_event(e) for e in state])


async def members(request: Request) -> Response:
    who = await requester(request)
    at_token = query_param(request, "at")
    at = parse_pagination_token(at_token) if at_token else None
    events = await homeserver(request).rooms.members(who.user_id, room_id_param(request), at)
    wanted = query_param(request, "membership")
    unwanted = query_param(request, "not_membership")
    chunk = [
        client_event(e)
        for e in events
        if (wanted is None or e.pdu["content"].get("membership") == wanted)
        and (unwanted is None or e.pdu["content"].get("membership") != unwanted)
    ]
    return json_response({"chunk": chunk})


async def joined_members(request: Request) -> Response:
    who = await requester(request)
    events = await homeserver(request).rooms.members(who.user_id, room_id_param(request))
    joined: dict[str, Any] = {}
    for event in events:
        content = event.pdu["content"]
        if content.get("membership") == "join" and event.state_key is not None:
            joined[event.state_key] = {
                "display_name": content.get("displayname"),
                "avatar_url": content.get("avatar_url"),
            }
    return json_response({"joined": joined})


def _int_param(request: Request, name: str, default: int) -> int:
    value = query_param(request, name)
    if value is None:
        return default
    if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 12:
        raise invalid_param(f"{name} must be an integer")
    return int(value)


async def messages(request: Request) -> Response:
    hs = homeserver(request)
    who = await requester(request)
    room_id = room_id_param(request)
    direction = query_param(request, "dir", required=True)
    if direction not in ("b", "f"):
        raise invalid_param("dir must be 'b' or 'f'")
    backwards = direction == "b"
    limit = min(max(_int_param(request, "limit", 10), 0), MAX_MESSAGES_LIMIT)
    event_filter = RoomEventFilter.from_param(query_param(request, "filter"))
    ceiling = await hs.rooms.visibility_ceiling(who.user_id, room_id)
    from_token = query_param(request, "from")
    to_token = query_param(request, "to")
    if from_token:
        position = parse_pagination_token(from_token)
    else:
        position = (await hs.rooms.store.current_position()) if backwards else 0
    to_pos = parse_pagination_token(to_token) if to_token else None
    start = from_token or f"t{position}"
    chunk: list[Any] = []
    more = True
    cursor = position
    page_size = max(limit, 10)
    # Filtered-out events don't count against `limit`: read on, a bounded number of pages.
    for _ in range(20):
        if len(chunk) >= limit:
            break
        page = await hs.rooms.store.paginate(room_id, cursor, to_pos, backwards, page_size,
                                             ceiling)
        consumed = 0
        for event in page:
            consumed += 1
            cursor = event.stream_ordering - 1 if backwards else event.stream_ordering
            if event_filter.allows(event.pdu, room_id):
                chunk.append(event)
                if len(chunk) >= limit:
                    break
        if len(page) < page_size and consumed == len(page):
            more = False
            break
    redactions = await hs.rooms.redactions_of(chunk)
    viewer = (who.user_id, who.device_id)
    response: dict[str, Any] = {
        "start": start,
        "chunk": [client_event(e, viewer, redactions) for e in chunk],
    }
    if more:
        response["end"] = f"t{cursor}"
    if event_filter.lazy_load_members and chunk:
        senders = {e.sender for e in chunk}
        member_events = await hs.rooms.members(who.user_id, room_id)
        response["state"] = [
            client_event(e) for e in member_events if e.state_key in senders
        ]
    return json_response(response)


async def get_event(request: Request) -> Response:
    who = await requester(request)
    hs = homeserver(request)
    event = await hs.rooms.get_event(
        who.user_id, room_id_param(request), path_param(request, "event_id")
    )
    redactions = await hs.rooms.redactions_of([event])
    return json_response(client_event(event, (who.user_id, who.device_id), redactions))


async def redact(request: Request) -> Response:
    who = await requester(request)
    body = await optional_json_body(request, ReasonBody, ReasonBody())
    content: dict[str, Any] = {}
    if body.reason is not None:
        content["reason"] = body.reason
    event_id = await homeserver(request).rooms.send(
        who.user_id,
        room_id_param(request),
        "m.room.redaction",
        content,
        redacts=path_param(request, "event_id"),
        txn=(who.user_id, who.device_id, path_param(request, "txn_id")),
    )
    return json_response({"event_id": event_id})


routes = [
    Route("/createRoom", create_room, methods=["POST"]),
    Route("/joined_rooms", joined_rooms, methods=["GET"]),
    Route("/join/{room_id_or_alias}", join_room_or_alias, methods=["POST"]),
    Route("/rooms/{room_id}/join", join_room_id, methods=["POST"]),
    Route("/rooms/{room_id}/invite", invite, methods=["POST"]),
    Route("/rooms/{room_id}/leave", leave, methods=["POST"]),
    Route("/rooms/{room_id}/kick", kick, methods=["POST"]),
    Route("/rooms/{room_id}/ban", ban, methods=["POST"]),
    Route("/rooms/{room_id}/unban", unban, methods=["POST"]),
    Route("/rooms/{room_id}/forget", forget, methods=["POST"]),
    Route("/rooms/{room_id}/send/{event_type}/{txn_id}", send, methods=["PUT"]),
    Route("/rooms/{room_id}/state", get_state, methods=["GET"]),
    Route("/rooms/{room_id}/state/{event_type}", get_state_event, methods=["GET"]),
    Route("/rooms/{room_id}/state/{event_type}", put_state, methods=["PUT"]),
    Route("/rooms/{room_id}/state/{event_type}/", get_state_event, methods=["GET"]),
    Route("/rooms/{room_id}/state/{event_type}/", put_state, methods=["PUT"]),
    Route("/rooms/{room_id}/state/{event_type}/{state_key}", get_state_event, methods=["GET"]),
    Route("/rooms/{room_id}/state/{event_type}/{state_key}", put_state, methods=["PUT"]),
    Route("/rooms/{room_id}/members", members, methods=["GET"]),
    Route("/rooms/{room_id}/joined_members", joined_members, methods=["GET"]),
    Route("/rooms/{room_id}/messages", messages, methods=["GET"]),
    Route("/rooms/{room_id}/event/{event_id}", get_event, methods=["GET"]),
    Route("/rooms/{room_id}/redact/{event_id}/{txn_id}", redact, methods=["PUT"]),
]
