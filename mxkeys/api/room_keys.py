"""Server-side key backups (spec: `key_backup.yaml`): `/room_keys/version` and `/room_keys/keys`.

Uploads are validated completely before anything is written: one bad key fails the whole
request, and the error names its room and session. Downloads stream the stored JSON: each
key's `session_data` is kept as JSON text and copied into the response without re-parsing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mxkeys.api.http import (
    homeserver,
    json_body,
    json_response,
    path_param,
    query_param,
    read_body,
    requester,
)
from mxkeys.errors import MatrixError, bad_json, invalid_param, missing_param, not_json, too_large
from mxkeys.json_checks import json_problem, only_string_members
from mxkeys.storage.room_keys import BackupVersion, KeyStream, NewRoomKey

# JSON integers clients can rely on (the spec's canonical-JSON range), not negative.
Counter = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]

# Room IDs are at most 255 bytes (spec: room ID grammar); megolm session IDs are 43
# characters. Longer IDs, or IDs with NUL (PostgreSQL text cannot hold it), are refused
# rather than failing in the database.
MAX_ID_BYTES = 255


class VersionBody(msgspec.Struct):
    algorithm: str
    auth_data: dict[str, Any]


class UpdateVersionBody(msgspec.Struct):
    algorithm: str
    auth_data: dict[str, Any]
    version: str | None = None


class KeyBackupData(msgspec.Struct):
    first_message_index: Counter
    forwarded_count: Counter
    is_verified: bool
    # Kept as the JSON text sent: msgspec checks its syntax (escapes, surrogates, no
    # NaN) while skipping it, `_new_key` checks it is an object of valid UTF-8. It is stored
    # and served back verbatim, never parsed into Python objects.
    session_data: msgspec.Raw


class _KeyCheck(msgspec.Struct):
    """KeyBackupData with `session_data` as a value, to explain a key that failed."""

    first_message_index: Counter
    forwarded_count: Counter
    is_verified: bool
    session_data: dict[str, Any]


class RoomKeyBackup(msgspec.Struct):
    sessions: dict[str, KeyBackupData]


class KeysBackup(msgspec.Struct):
    rooms: dict[str, RoomKeyBackup]


_encoder = msgspec.json.Encoder()
_decode_key = msgspec.json.Decoder(KeyBackupData).decode
_decode_room = msgspec.json.Decoder(RoomKeyBackup).decode
_decode_rooms = msgspec.json.Decoder(KeysBackup).decode


# -- validation ----------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    return _encoder.encode(value).decode()


def _key_error(room_id: str, session_id: str, error: str, missing: bool = False) -> MatrixError:
    message = f"Invalid key for room {room_id!r}, session {session_id!r}: {error}"
    return missing_param(message) if missing else invalid_param(message)


def _check_id(room_id: str, session_id: str, name: str, value: str) -> None:
    # (At most 4 bytes a character: short strings need no encoding to measure.)
    if len(value) > MAX_ID_BYTES // 4 and len(value.encode()) > MAX_ID_BYTES:
        raise _key_error(room_id, session_id, f"{name} longer than {MAX_ID_BYTES} bytes")
    if "\x00" in value:
        raise _key_error(room_id, session_id, f"{name} contains NUL")
    if name == "room ID" and (len(value) < 2 or value[0] != "!"):
        raise _key_error(room_id, session_id, "room IDs start with '!'")


def _check_key(room_id: str, session_id: str, value: Any) -> None:
    """Raise the error for one key as sent (decoded as plain JSON), if it is invalid."""
    if not isinstance(value, dict):
        raise _key_error(room_id, session_id, "key data must be an object")
    try:
        msgspec.convert(value, _KeyCheck)
    except msgspec.ValidationError as e:
        message = str(e)
        raise _key_error(
            room_id, session_id, message, missing="missing required field" in message
        ) from None


def _locate_error(body: bytes, room_id: str | None, original: msgspec.ValidationError) -> None:
    """After a body failed validation, raise an error naming the bad key.

    The fast typed decode reports dict values only as `[...]`; this re-reads the body as
    plain JSON (the error path only) to find which room and session are wrong.
    """
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise not_json() from None
    except RecursionError:
        raise bad_json("Request body nested too deeply") from None
    if not isinstance(data, dict):
        raise bad_json("Request body must be a JSON object")
    if room_id is None:
        if "rooms" not in data:
            raise missing_param("Missing parameter: rooms")
        rooms = data["rooms"]
        if not isinstance(rooms, dict):
            raise bad_json("rooms must be an object")
    else:
        rooms = {room_id: data}
    for room, room_data in rooms.items():
        if not isinstance(room_data, dict):
            raise bad_json(f"Room {room!r}: must be an object")
        if "sessions" not in room_data:
            raise missing_param(f"Room {room!r}: missing parameter: sessions")
        sessions = room_data["sessions"]
        if not isinstance(sessions, dict):
            raise bad_json(f"Room {room!r}: sessions must be an object")
        for session, key in sessions.items():
            _check_key(room, session, key)
    raise bad_json(str(original))


def _new_key(room_id: str, session_id: str, key: KeyBackupData) -> NewRoomKey:
    _check_id(room_id, session_id, "session ID", session_id)
    # (Valid UTF-8: `read_body` checked the whole body.)
    session_data = str(key.session_data, "utf-8")
    if not session_data.startswith("{"):
        raise _key_error(room_id, session_id, "session_data must be an object")
    if not only_string_members(session_data):
        # Numbers or nesting inside: decode it to check (`mxkeys.json_checks`); the common
        # case, an object of strings, is checked without decoding.
        try:
            problem = json_problem(msgspec.json.decode(session_data), depth=5)
        except (msgspec.DecodeError, RecursionError):  # e.g. 1e999: out of range
            problem = "a number out of range, or nested too deeply"
        if problem is not None:
            raise _key_error(room_id, session_id, f"session_data: {problem}")
    return NewRoomKey(
        room_id,
        session_id,
        key.first_message_index,
        key.forwarded_count,
        key.is_verified,
        session_data,
    )


async def _uploaded_keys(request: Request) -> list[NewRoomKey]:
    """The keys of a PUT on any of the three `/room_keys/keys` paths, all validated."""
    room_id = path_param(request, "room_id") if "room_id" in request.path_params else None
    session_id = path_param(request, "session_id") if "session_id" in request.path_params else None
    body = await read_body(request)
    try:
        if session_id is not None:
            assert room_id is not None
            rooms = {room_id: RoomKeyBackup({session_id: _decode_key(body)})}
        elif room_id is not None:
            rooms = {room_id: _decode_room(body)}
        else:
            rooms = _decode_rooms(body).rooms
    except msgspec.ValidationError as e:
        if session_id is not None:
            assert room_id is not None
            try:
                data = msgspec.json.decode(body)
            except msgspec.DecodeError:
                raise not_json() from None
            except RecursionError:
                raise bad_json("Request body nested too deeply") from None
            _check_key(room_id, session_id, data)
            raise bad_json(str(e)) from None
        _locate_error(body, room_id, e)
        raise  # not reached: _locate_error always raises
    except msgspec.DecodeError:
        raise not_json() from None
    except RecursionError:
        raise bad_json("Request body nested too deeply") from None
    limit = homeserver(request).config.max_backup_keys_per_request
    total = sum(len(backup.sessions) for backup in rooms.values())
    if total > limit:
        raise too_large(f"At most {limit} keys per request ({total} sent)")
    keys: list[NewRoomKey] = []
    for room, backup in rooms.items():
        if backup.sessions:
            _check_id(room, next(iter(backup.sessions)), "room ID", room)
        keys.extend([_new_key(room, session, key) for session, key in backup.sessions.items()])
    return keys


# -- streaming out -------------------------------------------------------------------------


def _quote(value: str) -> str:
    return _encoder.encode(value).decode()


def _session_json(session_id: str, fmi: int, fc: int, verified: bool, data: str) -> str:
    return (
        f'{_quote(session_id)}:{{"first_message_index":{fmi},"forwarded_count":{fc},'
        f'"is_verified":{"true" if verified else "false"},"session_data":{data}}}'
    )


async def _backup_chunks(stream: KeyStream) -> AsyncIterator[bytes]:
    """`{"rooms": {room: {"sessions": {session: key}}}}`, one chunk per batch of rows."""
    room: str | None = None
    head = '{"rooms":{'
    async for batch in stream.batches():
        parts = [head]
        head = ""
        for room_id, session_id, fmi, fc, verified, data in batch:
            if room_id != room:
                if room is not None:
                    parts.append("}},")
                parts.append(f'{_quote(room_id)}:{{"sessions":{{')
                room = room_id
            else:
                parts.append(",")
            parts.append(_session_json(session_id, fmi, fc, verified, data))
        yield "".join(parts).encode()
    yield (head + ("}}}}" if room is not None else "}}")).encode()


async def _room_chunks(stream: KeyStream) -> AsyncIterator[bytes]:
    """`{"sessions": {session: key}}` for one room."""
    head = '{"sessions":{'
    async for batch in stream.batches():
        parts = [
            _session_json(session_id, fmi, fc, verified, data)
            for _, session_id, fmi, fc, verified, data in batch
        ]
        yield (head + ",".join(parts)).encode()
        head = ","
    yield b'{"sessions":{}}' if head != "," else b"}}"


class KeyStreamResponse(StreamingResponse):
    """Streams JSON built from a `KeyStream`, and always closes the stream (releasing its
    database connection), even when the client goes away."""

    def __init__(self, stream: KeyStream, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(chunks, media_type="application/json")
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.close()


# -- endpoints -----------------------------------------------------------------------------


def _version_json(info: BackupVersion) -> dict[str, Any]:
    return {
        "algorithm": info.algorithm,
        "auth_data": msgspec.Raw(info.auth_data.encode()),
        "count": info.count,
        "etag": str(info.etag),
        "version": str(info.version),
    }


async def create_version(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, VersionBody)
    version = await homeserver(request).room_keys.create_version(
        who.user_id, body.algorithm, _json_text(body.auth_data)
    )
    return json_response({"version": version})


async def get_current_version(request: Request) -> Response:
    who = await requester(request)
    info = await homeserver(request).room_keys.get_version(who.user_id, None)
    return json_response(_version_json(info))


async def get_version(request: Request) -> Response:
    who = await requester(request)
    info = await homeserver(request).room_keys.get_version(
        who.user_id, path_param(request, "version")
    )
    return json_response(_version_json(info))


async def update_version(request: Request) -> Response:
    who = await requester(request)
    body = await json_body(request, UpdateVersionBody)
    await homeserver(request).room_keys.update_version(
        who.user_id,
        path_param(request, "version"),
        body.algorithm,
        _json_text(body.auth_data),
        body.version,
    )
    return json_response({})


async def delete_version(request: Request) -> Response:
    who = await requester(request)
    await homeserver(request).room_keys.delete_version(who.user_id, path_param(request, "version"))
    return json_response({})


def _version_param(request: Request) -> str:
    version = query_param(request, "version", required=True)
    assert version is not None
    return version


async def put_keys(request: Request) -> Response:
    who = await requester(request)
    version = _version_param(request)
    keys = await _uploaded_keys(request)
    etag, count = await homeserver(request).room_keys.upload_keys(who.user_id, version, keys)
    return json_response({"etag": etag, "count": count})


async def get_keys(request: Request) -> Response:
    who = await requester(request)
    version = _version_param(request)
    stream = await homeserver(request).room_keys.stream_keys(who.user_id, version)
    return KeyStreamResponse(stream, _backup_chunks(stream))


async def get_room_keys(request: Request) -> Response:
    who = await requester(request)
    version = _version_param(request)
    stream = await homeserver(request).room_keys.stream_keys(
        who.user_id, version, path_param(request, "room_id")
    )
    return KeyStreamResponse(stream, _room_chunks(stream))


async def get_session_key(request: Request) -> Response:
    who = await requester(request)
    version = _version_param(request)
    key = await homeserver(request).room_keys.get_key(
        who.user_id, version, path_param(request, "room_id"), path_param(request, "session_id")
    )
    return json_response(
        {
            "first_message_index": key.first_message_index,
            "forwarded_count": key.forwarded_count,
            "is_verified": key.is_verified,
            "session_data": msgspec.Raw(key.session_data.encode()),
        }
    )


async def delete_keys(request: Request) -> Response:
    who = await requester(request)
    version = _version_param(request)
    params = request.path_params
    etag, count = await homeserver(request).room_keys.delete_keys(
        who.user_id,
        version,
        path_param(request, "room_id") if "room_id" in params else None,
        path_param(request, "session_id") if "session_id" in params else None,
    )
    return json_response({"etag": etag, "count": count})


routes = [
    Route("/room_keys/version", create_version, methods=["POST"]),
    Route("/room_keys/version", get_current_version, methods=["GET"]),
    # Some clients ask for the current version with a trailing slash (Synapse accepts it).
    Route("/room_keys/version/", get_current_version, methods=["GET"]),
    Route("/room_keys/version/{version}", get_version, methods=["GET"]),
    Route("/room_keys/version/{version}", update_version, methods=["PUT"]),
    Route("/room_keys/version/{version}", delete_version, methods=["DELETE"]),
    Route("/room_keys/keys", put_keys, methods=["PUT"]),
    Route("/room_keys/keys", get_keys, methods=["GET"]),
    Route("/room_keys/keys", delete_keys, methods=["DELETE"]),
    Route("/room_keys/keys/{room_id}", put_keys, methods=["PUT"]),
    Route("/room_keys/keys/{room_id}", get_room_keys, methods=["GET"]),
    Route("/room_keys/keys/{room_id}", delete_keys, methods=["DELETE"]),
    Route("/room_keys/keys/{room_id}/{session_id}", put_keys, methods=["PUT"]),
    Route("/room_keys/keys/{room_id}/{session_id}", get_session_key, methods=["GET"]),
    Route("/room_keys/keys/{room_id}/{session_id}", delete_keys, methods=["DELETE"]),
]
