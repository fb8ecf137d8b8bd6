"""Users, devices and access tokens.

Tables that hold per-device data reference `devices` with ON DELETE CASCADE, so deleting a
device (or a user) removes everything stored for it in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.device_keys import devices_removed, record_device_list_changes
from mxkeys.storage.schema import access_tokens, devices, users


@dataclass(frozen=True, slots=True)
class TokenOwner:
    user_id: str
    device_id: str
    is_admin: bool
    last_seen_ts: int


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


@dataclass(frozen=True, slots=True)
class NewLogin:
    """A device to create (or reuse) and the access token to attach to it."""

    device_id: str
    display_name: str | None
    token_hash: str


# Every authenticated request runs this: built once (building a statement costs more than
# running it), so only the bound token changes.
_TOKEN_OWNER = (
    sa.select(
        access_tokens.c.user_id,
        access_tokens.c.device_id,
        access_tokens.c.last_seen_ts,
        users.c.is_admin,
    )
    .join(users, users.c.user_id == access_tokens.c.user_id)
    .where(access_tokens.c.token_hash == sa.bindparam("token_hash"))
)


# Most tokens the SQLite token cache keeps before it starts over.
_TOKEN_CACHE_SIZE = 100_000


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Token lookups, cached on SQLite only. There one process owns the database (more
        # workers are refused), so every revocation (a device's deletion takes its tokens)
        # passes through `delete_devices` below, which evicts at once. On PostgreSQL another
        # worker may revoke a token at any moment: every request asks the database.
        # `_token_generation` moves with every eviction, so a lookup that read a row before
        # a deletion committed cannot put it back in the cache afterwards. A token a login or
        # registration creates is cached at once: the client's next request uses it.
        self._token_cache: dict[str, TokenOwner] | None = {} if db.is_sqlite else None
        self._cached_tokens_of: dict[str, set[str]] = {}  # user ID -> token hashes cached
        self._token_generation = 0

    # -- users -------------------------------------------------------------------------

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        is_admin: bool,
        now_ms: int,
        login: NewLogin | None = None,
    ) -> bool:
        """Create a user (and optionally its first device and token) atomically.

        Returns False, writing nothing, when the user ID is taken.
        """

        def txn(conn: Connection) -> bool:
            stmt = (
                dialect_insert(self.db.dialect, users)
                .values(
                    user_id=user_id,
                    password_hash=password_hash,
                    is_admin=is_admin,
                    created_ts=now_ms,
                )
                .on_conflict_do_nothing(index_elements=["user_id"])
                .returning(users.c.user_id)
            )
            # (INSERT rowcounts are not reliable across drivers; RETURNING is.)
            if conn.execute(stmt).first() is None:
                return False
            if login is not None:
                self._login_txn(conn, user_id, login, now_ms)
            return True

        generation = self._token_generation
        created = await self.db.write(txn)
        if created and login is not None:
            owner = TokenOwner(user_id, login.device_id, is_admin, now_ms)
            self._remember_token(login.token_hash, owner, generation)
        return created

    async def user_exists(self, user_id: str) -> bool:
        def txn(conn: Connection) -> bool:
            query = sa.select(users.c.user_id).where(users.c.user_id == user_id)
            return conn.execute(query).first() is not None

        return await self.db.read(txn)

    async def get_password_hash(self, user_id: str) -> tuple[bool, str | None]:
        """(user exists, its password hash)."""

        def txn(conn: Connection) -> tuple[bool, str | None]:
            query = sa.select(users.c.password_hash).where(users.c.user_id == user_id)
            row = conn.execute(query).first()
            return (False, None) if row is None else (True, row.password_hash)

        return await self.db.read(txn)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        def txn(conn: Connection) -> None:
            conn.execute(
                users.update().where(users.c.user_id == user_id).values(password_hash=password_hash)
            )

        await self.db.write(txn)

    # -- logins and tokens ---------------------------------------------------------------

    def _login_txn(self, conn: Connection, user_id: str, login: NewLogin, now_ms: int) -> None:
        # An existing device keeps its display name (the spec ignores
        # initial_device_display_name for a known device).
        created = conn.execute(
            dialect_insert(self.db.dialect, devices)
            .values(
                user_id=user_id,
                device_id=login.device_id,
                display_name=login.display_name,
                created_ts=now_ms,
                last_seen_ts=now_ms,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "device_id"])
            .returning(devices.c.device_id)
        ).first()
        if created is not None:  # a new device: a device-list change
            record_device_list_changes(conn, user_id, [login.device_id])
        conn.execute(
            access_tokens.insert().values(
                token_hash=login.token_hash,
                user_id=user_id,
                device_id=login.device_id,
                created_ts=now_ms,
                last_seen_ts=now_ms,
            )
        )

    async def add_login(self, user_id: str, login: NewLogin, now_ms: int) -> None:
        def txn(conn: Connection) -> bool:
            self._login_txn(conn, user_id, login, now_ms)
            is_admin = conn.execute(
                sa.select(users.c.is_admin).where(users.c.user_id == user_id)
            ).scalar()
            return bool(is_admin)

        generation = self._token_generation
        is_admin = await self.db.write(txn)
        owner = TokenOwner(user_id, login.device_id, is_admin, now_ms)
        self._remember_token(login.token_hash, owner, generation)

    async def get_token_owner(self, token_hash: str) -> TokenOwner | None:
        cache = self._token_cache
        if cache is not None and (cached := cache.get(token_hash)) is not None:
            return cached

        def txn(conn: Connection) -> TokenOwner | None:
            row = conn.execute(_TOKEN_OWNER, {"token_hash": token_hash}).first()
            if row is None:
                return None
            return TokenOwner(row.user_id, row.device_id, bool(row.is_admin), row.last_seen_ts)

        generation = self._token_generation
        owner = await self.db.read(txn)
        if owner is not None:
            self._remember_token(token_hash, owner, generation)
        return owner

    def _remember_token(self, token_hash: str, owner: TokenOwner, generation: int) -> None:
        """Cache a token read or created while `_token_generation` was `generation` (unless
        an eviction came in between: the token may be gone already)."""
        cache = self._token_cache
        if cache is None or generation != self._token_generation:
            return
        if len(cache) >= _TOKEN_CACHE_SIZE:
            cache.clear()
            self._cached_tokens_of.clear()
        cache[token_hash] = owner
        self._cached_tokens_of.setdefault(owner.user_id, set()).add(token_hash)

    def _evict_tokens(self, user_id: str, device_ids: Sequence[str] | None) -> None:
        """Forget cached tokens of the user's devices (all of them when None)."""
        cache = self._token_cache
        if cache is None:
            return
        self._token_generation += 1
        gone = None if device_ids is None else set(device_ids)
        hashes = self._cached_tokens_of.get(user_id, set())
        for token_hash in list(hashes):
            owner = cache.get(token_hash)
            if owner is None or gone is None or owner.device_id in gone:
                cache.pop(token_hash, None)
                hashes.discard(token_hash)
        if not hashes:
            self._cached_tokens_of.pop(user_id, None)

    async def record_token_use(
        self,
        token_hash: str,
        user_id: str,
        device_id: str,
        now_ms: int,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        def txn(conn: Connection) -> None:
            conn.execute(
                access_tokens.update()
                .where(access_tokens.c.token_hash == token_hash)
                .values(last_seen_ts=now_ms)
            )
            conn.execute(
                devices.update()
                .where(devices.c.user_id == user_id, devices.c.device_id == device_id)
                .values(last_seen_ts=now_ms, last_seen_ip=ip, last_seen_user_agent=user_agent)
            )

        await self.db.write(txn)
        cache = self._token_cache
        if cache is not None and (cached := cache.get(token_hash)) is not None:
            cache[token_hash] = replace(cached, last_seen_ts=now_ms)

    # -- devices -------------------------------------------------------------------------

    @staticmethod
    def _device(row: sa.Row) -> Device:
        return Device(
            row.user_id, row.device_id, row.display_name, row.last_seen_ts, row.last_seen_ip
        )

    async def list_devices(self, user_id: str) -> list[Device]:
        def txn(conn: Connection) -> list[Device]:
            query = (
                sa.select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
            )
            return [self._device(row) for row in conn.execute(query)]

        return await self.db.read(txn)

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        def txn(conn: Connection) -> Device | None:
            query = sa.select(devices).where(
                devices.c.user_id == user_id, devices.c.device_id == device_id
            )
            row = conn.execute(query).first()
            return None if row is None else self._device(row)

        return await self.db.read(txn)

    async def set_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> bool:
        def txn(conn: Connection) -> bool:
            result = conn.execute(
                devices.update()
                .where(devices.c.user_id == user_id, devices.c.device_id == device_id)
                .values(display_name=display_name)
            )
            if result.rowcount != 1:
                return False
            record_device_list_changes(conn, user_id, [device_id])  # shown in /keys/query
            return True

        return await self.db.write(txn)

    async def delete_devices(self, user_id: str, device_ids: Sequence[str] | None) -> list[str]:
        """Delete devices (all of the user's when `device_ids` is None) with their tokens and
        everything else stored per device. Returns the IDs that existed."""

        def txn(conn: Connection) -> list[str]:
            condition = devices.c.user_id == user_id
            if device_ids is not None:
                condition = sa.and_(condition, devices.c.device_id.in_(list(device_ids)))
            deleted = conn.execute(devices.delete().where(condition).returning(devices.c.device_id))
            removed = sorted(row.device_id for row in deleted)
            devices_removed(conn, user_id, removed)  # device-list stream, signatures
            return removed

        try:
            return await self.db.write(txn)
        finally:
            # (Also when the outcome is unknown: evicting a live token costs one lookup.)
            self._evict_tokens(user_id, device_ids)
