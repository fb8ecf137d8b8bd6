"""Profiles (profile.yaml, "Profiles" in the client-server API).

Fields are `displayname`, `avatar_url`, `m.tz` and custom namespaced keys (v1.16). Choices
where the spec leaves room:

- A new user's display name is its localpart, as in Synapse: `on_registered` runs after
  registration (hooked in `HomeServer`).
- Setting `displayname` or `avatar_url` to "" removes the field, as Synapse does; `null` is
  refused for them (the spec lets servers refuse null) so they are always strings.
- Length limits as in Synapse: display names up to 256 characters, avatar URLs up to 1000.
  Longer values are 400 M_INVALID_PARAM: the value is unacceptable, not the request too big
  (M_TOO_LARGE is the 413 for oversized bodies, M_PROFILE_TOO_LARGE the spec's code for the
  whole profile going over 64 KiB, which is also enforced).
- Remote users' profiles answer 404: there is no federation yet to ask their server.
- Lookups need no authentication (the spec declares none), and any local user's profile is
  visible, as with Synapse's defaults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from mxkeys.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from mxkeys.ids import split_user_id
from mxkeys.storage.profile import ProfileStore

logger = logging.getLogger(__name__)

DISPLAYNAME = "displayname"
AVATAR_URL = "avatar_url"
TIMEZONE = "m.tz"
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000
MAX_KEY_BYTES = 255
# "the total profile MUST be under 64 KiB"
MAX_PROFILE_BYTES = 64 * 1024 - 1
FIELD_NAME_RE = re.compile(r"avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")

ProfileListener = Callable[[str, str | None, str | None], Awaitable[None]]


def check_field_name(field: str) -> None:
    if len(field.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is too long")
    if not FIELD_NAME_RE.fullmatch(field):
        raise invalid_param("Invalid profile key")


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad_json(f"'{field}' must be a string")
    return value


class ProfileService:
    def __init__(self, store: ProfileStore, server_name: str) -> None:
        self.store = store
        self.server_name = server_name
        self._listeners: list[ProfileListener] = []

    def add_listener(self, callback: ProfileListener) -> None:
        """`await callback(user_id, displayname, avatar_url)` after either of them changes."""
        self._listeners.append(callback)

    def _is_local(self, user_id: str) -> bool:
        parts = split_user_id(user_id)
        return parts is not None and parts[1] == self.server_name

    async def _fields(self, user_id: str) -> dict[str, str]:
        """The stored fields (JSON text) of a local user; 404 for unknown or remote users."""
        fields = await self.store.get_fields(user_id) if self._is_local(user_id) else None
        if fields is None:
            raise not_found("Profile not found")
        return fields

    async def get_profile(self, user_id: str) -> tuple[str | None, str | None]:
        """(displayname, avatar_url) of a local user; (None, None) if unknown."""
        fields = await self.store.get_fields(user_id) if self._is_local(user_id) else None
        if not fields:
            return None, None
        return _decoded_str(fields.get(DISPLAYNAME)), _decoded_str(fields.get(AVATAR_URL))

    async def get_full_profile(self, user_id: str) -> dict[str, Any]:
        fields = await self._fields(user_id)
        if not fields:
            # "404: There is no profile information for this user"
            raise not_found("Profile not found")
        return {name: msgspec.json.decode(value) for name, value in fields.items()}

    async def get_field(self, user_id: str, field: str) -> Any:
        check_field_name(field)
        fields = await self._fields(user_id)
        if field not in fields:
            raise not_found(f"Profile field {field} not found")
        return msgspec.json.decode(fields[field])

    def _validate(self, field: str, value: Any) -> Any:
        """The value to store (None for an emptied display name or avatar URL)."""
        if field == DISPLAYNAME:
            name = _string(value, field)
            if len(name) > MAX_DISPLAYNAME_LENGTH:
                raise invalid_param(f"Display name is too long (max {MAX_DISPLAYNAME_LENGTH})")
            return name or None
        if field == AVATAR_URL:
            url = _string(value, field)
            if len(url) > MAX_AVATAR_URL_LENGTH:
                raise invalid_param(f"Avatar URL is too long (max {MAX_AVATAR_URL_LENGTH})")
            return url or None
        if field == TIMEZONE:
            return _string(value, field)
        return value

    async def set_field(self, requester_id: str, user_id: str, field: str, value: Any) -> None:
        if requester_id != user_id:
            raise forbidden("Cannot change another user's profile")
        check_field_name(field)
        stored = self._validate(field, value)
        # Only an emptied display name or avatar URL is a removal; a custom field's null is
        # stored as null (spec).
        removal = stored is None and field in (DISPLAYNAME, AVATAR_URL)
        await self._write(user_id, {field: stored}, remove=removal)

    async def delete_field(self, requester_id: str, user_id: str, field: str) -> None:
        if requester_id != user_id:
            raise forbidden("Cannot change another user's profile")
        check_field_name(field)
        await self._write(user_id, {field: None}, remove=True)

    async def _write(self, user_id: str, values: dict[str, Any], remove: bool) -> None:
        changes = {
            name: None if remove else msgspec.json.encode(value).decode()
            for name, value in values.items()
        }
        result = await self.store.set_fields(user_id, changes, MAX_PROFILE_BYTES)
        if result is None:
            raise MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB")
        before, after = result
        watched = (DISPLAYNAME, AVATAR_URL)
        if any(before.get(name) != after.get(name) for name in watched):
            displayname = _decoded_str(after.get(DISPLAYNAME))
            avatar_url = _decoded_str(after.get(AVATAR_URL))
            for listener in list(self._listeners):
                try:
                    await listener(user_id, displayname, avatar_url)
                except Exception:
                    # The profile change is committed; a failing propagation must not turn
                    # it into an error for the client.
                    logger.exception("profile listener failed for %s", user_id)

    async def on_registered(self, user_id: str) -> None:
        """A new local user's display name defaults to its localpart (as in Synapse)."""
        parts = split_user_id(user_id)
        if parts is None:
            return
        await self.store.set_fields(
            user_id, {DISPLAYNAME: msgspec.json.encode(parts[0]).decode()}, MAX_PROFILE_BYTES
        )


def _decoded_str(value: str | None) -> str | None:
    if value is None:
        return None
    decoded = msgspec.json.decode(value)
    return decoded if isinstance(decoded, str) else None
