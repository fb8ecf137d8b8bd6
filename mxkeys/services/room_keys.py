"""Server-side key backups (spec: "Server-side key backups", `key_backup.yaml`).

Backups are per user and versioned. Where the spec is silent this follows Synapse:

- Version IDs are decimal integers allocated per user from "1", never reused, even after a
  deletion. Any other string names no version (404).
- The current version is the newest version not deleted; only it accepts keys. Deleting it
  makes the newest remaining version current (and writable) again.
- A deleted version is gone for reading and writing (404), but deleting it again succeeds.
- Keys can be read and deleted in any live version, not only the current one.
- `etag` is a per-version change counter, `count` the number of keys in the version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mxkeys.errors import MatrixError, invalid_param, not_found
from mxkeys.services.ratelimit import RateLimiter
from mxkeys.storage.room_keys import (
    BackupVersion,
    KeyMetadata,
    KeyStream,
    KeysWrite,
    NewRoomKey,
    RoomKeyStore,
    StoredRoomKey,
)

MEGOLM_BACKUP_V1 = "m.megolm_backup.v1.curve25519-aes-sha2"
# The algorithms the spec defines. (Synapse stores any algorithm string; the spec enumerates
# the valid ones, so anything else is refused with M_INVALID_PARAM.)
SUPPORTED_ALGORITHMS = frozenset({MEGOLM_BACKUP_V1})

# Canonical decimal version IDs, as allocated (at most 18 digits: fits a BIGINT).
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def parse_version(version: str) -> int | None:
    """The version number a version ID names, or None if it cannot name one ("01", "x")."""
    return int(version) if _VERSION.fullmatch(version) else None


def should_replace(stored: KeyMetadata, uploaded: KeyMetadata) -> bool:
    """Whether an uploaded key replaces the stored key for the same session.

    The spec's rule, in its order: a verified key beats an unverified one whatever the other
    fields say; between equally verified keys the lower `first_message_index` wins, then the
    lower `forwarded_count`. When all three are equal the stored key stays. (Synapse checks
    the fields in a different order, letting e.g. a lower index replace a verified key.)
    """
    if stored.is_verified != uploaded.is_verified:
        return uploaded.is_verified
    if stored.first_message_index != uploaded.first_message_index:
        return uploaded.first_message_index < stored.first_message_index
    return uploaded.forwarded_count < stored.forwarded_count


def wrong_version(current_version: int) -> MatrixError:
    return MatrixError(
        403,
        "M_WRONG_ROOM_KEYS_VERSION",
        "Wrong backup version.",
        current_version=str(current_version),
    )


class RoomKeyService:
    def __init__(self, store: RoomKeyStore, upload_limiter: RateLimiter | None = None) -> None:
        self.store = store
        self.upload_limiter = upload_limiter

    # -- versions ------------------------------------------------------------------------

    @staticmethod
    def check_algorithm(algorithm: str) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise invalid_param(f"Unsupported backup algorithm: {algorithm}")

    async def create_version(self, user_id: str, algorithm: str, auth_data: str) -> str:
        """A new backup version (it becomes the current one); `auth_data` is JSON text."""
        self.check_algorithm(algorithm)
        return str(await self.store.create_version(user_id, algorithm, auth_data))

    async def get_version(self, user_id: str, version: str | None) -> BackupVersion:
        """A backup version's information; the current one when `version` is None."""
        if version is None:
            info = await self.store.get_version(user_id, None)
            if info is None:
                raise not_found("No current backup version")
            return info
        number = parse_version(version)
        info = None if number is None else await self.store.get_version(user_id, number)
        if info is None:
            raise not_found("Unknown backup version")
        return info

    async def update_version(
        self,
        user_id: str,
        version: str,
        algorithm: str,
        auth_data: str,
        body_version: str | None,
    ) -> None:
        """Change a version's `auth_data`; nothing else may change."""
        if body_version is not None and body_version != version:
            raise invalid_param("Version in body does not match the version in the path")
        number = parse_version(version)
        stored = (
            None
            if number is None
            else await self.store.update_auth_data(user_id, number, algorithm, auth_data)
        )
        if stored is None:
            raise not_found("Unknown backup version")
        if stored != algorithm:
            raise invalid_param("Algorithm does not match")

    async def delete_version(self, user_id: str, version: str) -> None:
        """Delete a version with its keys. A deleted version may be deleted again."""
        number = parse_version(version)
        if number is None or not await self.store.delete_version(user_id, number):
            raise not_found("Unknown backup version")

    # -- keys ----------------------------------------------------------------------------

    @staticmethod
    def _written(result: KeysWrite, version: str) -> tuple[str, int]:
        if result.status == "ok":
            return str(result.etag), result.count
        if result.status == "wrong_version":
            assert result.current_version is not None
            raise wrong_version(result.current_version)
        if result.status == "no_backup":
            raise not_found("No current backup version")
        raise not_found(f"Unknown backup version: {version}")

    async def upload_keys(
        self, user_id: str, version: str, keys: Sequence[NewRoomKey]
    ) -> tuple[str, int]:
        """Merge keys into the current version; (etag, count) afterwards.

        `keys` must already be valid, and name each (room, session) once.
        """
        if self.upload_limiter is not None:
            await self.upload_limiter.check(user_id)
        result = await self.store.upload_keys(user_id, parse_version(version), keys, should_replace)
        return self._written(result, version)

    async def delete_keys(
        self,
        user_id: str,
        version: str,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> tuple[str, int]:
        """Delete all keys of a version, a room's, or one session's; (etag, count) after."""
        result = await self.store.delete_keys(user_id, parse_version(version), room_id, session_id)
        return self._written(result, version)

    async def get_key(
        self, user_id: str, version: str, room_id: str, session_id: str
    ) -> StoredRoomKey:
        exists, key = await self.store.get_key(user_id, parse_version(version), room_id, session_id)
        if not exists:
            raise not_found("Unknown backup version")
        if key is None:
            raise not_found("Key not found")
        return key

    async def stream_keys(
        self, user_id: str, version: str, room_id: str | None = None
    ) -> KeyStream:
        """The keys of a version (or of one of its rooms) as an open stream of row batches;
        the caller closes it."""
        stream = await self.store.stream_keys(user_id, parse_version(version), room_id)
        if stream is None:
            raise not_found("Unknown backup version")
        return stream
