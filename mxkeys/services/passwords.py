"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio

import argon2


class PasswordHasher:
    def __init__(self, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
        )

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._hasher.hash, password)

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches; a missing hash never matches."""
        if password_hash is None:
            # Spend the same effort as a real check, so timing does not tell users apart.
            await self.hash(password)
            return False
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self._hasher.verify, password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
