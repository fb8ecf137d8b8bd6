"""Access tokens and password logins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mxkeys.errors import MatrixError, forbidden
from mxkeys.ids import hash_token, now_ms, random_device_id, random_token
from mxkeys.services.passwords import PasswordHasher
from mxkeys.storage.accounts import AccountStore, NewLogin

# How stale a token's last-seen time may get before a request refreshes it: keeps
# `GET /devices` useful without a database write on every request.
LAST_SEEN_INTERVAL_MS = 60_000


@dataclass(frozen=True, slots=True)
class Requester:
    """The authenticated user and device behind a request."""

    user_id: str
    device_id: str
    is_admin: bool
    token_hash: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str


class AuthService:
    def __init__(self, accounts: AccountStore, passwords: PasswordHasher) -> None:
        self.accounts = accounts
        self.passwords = passwords
        # Device IDs a login may not take: the user's cross-signing key IDs.
        self.is_reserved_device_id: Callable[[str, str], Awaitable[bool]] | None = None

    async def authenticate(
        self, token: str, ip: str | None = None, user_agent: str | None = None
    ) -> Requester:
        token_hash = hash_token(token)
        owner = await self.accounts.get_token_owner(token_hash)
        if owner is None:
            raise MatrixError(
                401, "M_UNKNOWN_TOKEN", "Unrecognised access token", soft_logout=False
            )
        now = now_ms()
        if now - owner.last_seen_ts > LAST_SEEN_INTERVAL_MS:
            await self.accounts.record_token_use(
                token_hash, owner.user_id, owner.device_id, now, ip, user_agent
            )
        return Requester(owner.user_id, owner.device_id, owner.is_admin, token_hash)

    async def check_password(self, user_id: str, password: str) -> bool:
        exists, password_hash = await self.accounts.get_password_hash(user_id)
        ok = await self.passwords.verify(password_hash if exists else None, password)
        if ok and password_hash is not None and self.passwords.needs_rehash(password_hash):
            await self.accounts.set_password_hash(user_id, await self.passwords.hash(password))
        return ok

    async def login_with_password(
        self, user_id: str, password: str, device_id: str | None, display_name: str | None
    ) -> LoginResult:
        if not await self.check_password(user_id, password):
            raise forbidden("Invalid username or password")
        return await self.create_login(user_id, device_id, display_name)

    async def create_login(
        self, user_id: str, device_id: str | None, display_name: str | None
    ) -> LoginResult:
        """A new access token on `device_id` (created if unknown, or a fresh ID if None)."""
        if (
            device_id is not None
            and self.is_reserved_device_id is not None
            and await self.is_reserved_device_id(user_id, device_id)
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "device_id is a cross-signing key's ID")
        token = random_token()
        login = NewLogin(device_id or random_device_id(), display_name, hash_token(token))
        await self.accounts.add_login(user_id, login, now_ms())
        return LoginResult(user_id, login.device_id, token)
