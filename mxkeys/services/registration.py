"""Creating accounts: username rules and the register flow's final step."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mxkeys.errors import MatrixError
from mxkeys.ids import (
    LOCALPART_RE,
    MAX_USER_ID_BYTES,
    hash_token,
    make_user_id,
    now_ms,
    random_device_id,
    random_token,
)
from mxkeys.services.passwords import PasswordHasher
from mxkeys.storage.accounts import AccountStore, NewLogin

MAX_PASSWORD_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Registered:
    user_id: str
    device_id: str | None
    access_token: str | None


class RegistrationService:
    def __init__(self, accounts: AccountStore, passwords: PasswordHasher, server_name: str) -> None:
        self.accounts = accounts
        self.passwords = passwords
        self.server_name = server_name
        # Awaited with the new user's ID after it is created (e.g. its default profile).
        self.on_registered: list[Callable[[str], Awaitable[None]]] = []

    def user_id_for(self, username: str) -> str:
        """Validate a requested username (a localpart) and return the user ID."""
        if not username or not LOCALPART_RE.fullmatch(username):
            raise MatrixError(
                400,
                "M_INVALID_USERNAME",
                "User ID may only contain a-z, 0-9, and the characters . _ = - / +",
            )
        if username.startswith("_"):
            # Reserved for application services and bridges, as in Synapse.
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not begin with '_'")
        user_id = make_user_id(username, self.server_name)
        if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return user_id

    async def check_available(self, username: str) -> str:
        user_id = self.user_id_for(username)
        if await self.accounts.user_exists(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        return user_id

    async def generate_user_id(self) -> str:
        """A free user ID for a registration that named none."""
        for _ in range(10):
            user_id = make_user_id(f"u{secrets.randbelow(10**12):012d}", self.server_name)
            if not await self.accounts.user_exists(user_id):
                return user_id
        raise MatrixError(500, "M_UNKNOWN", "Could not allocate a user ID")

    async def register(
        self,
        user_id: str,
        password: str | None,
        *,
        is_admin: bool = False,
        login: bool = True,
        device_id: str | None = None,
        display_name: str | None = None,
    ) -> Registered:
        if password is not None and len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "Password too long")
        password_hash = await self.passwords.hash(password) if password is not None else None
        token = new_login = None
        if login:
            token = random_token()
            new_login = NewLogin(device_id or random_device_id(), display_name, hash_token(token))
        created = await self.accounts.create_user(
            user_id, password_hash, is_admin, now_ms(), new_login
        )
        if not created:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        for hook in self.on_registered:
            await hook(user_id)
        return Registered(user_id, new_login.device_id if new_login else None, token)
