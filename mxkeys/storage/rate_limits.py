"""Token buckets in the database, so that every worker process enforces one shared limit.

A request takes its token with ONE statement (an upsert that refills the bucket for the time
passed, takes `cost` tokens if there are enough, and returns whether it did), atomic on both
backends: two workers can never both take the last token.
"""

from __future__ import annotations

import random

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database

# Buckets idle this long are deleted (every limit here refills within a day; a bucket that
# would take longer is reset to full, in the user's favour).
IDLE_MS = 24 * 3600 * 1000
# One request in this many also deletes idle buckets.
_PRUNE_EVERY = 1000

_ELAPSED = "(CASE WHEN :now > rate_limits.updated_ms THEN :now - rate_limits.updated_ms ELSE 0 END)"
_REFILLED = (
    f"(CASE WHEN rate_limits.tokens + {_ELAPSED} * :rate >= :burst THEN :burst "
    f"ELSE rate_limits.tokens + {_ELAPSED} * :rate END)"
)
_TAKE = sa.text(
    f"""
    INSERT INTO rate_limits (key, tokens, updated_ms, allowed)
    VALUES (:key, CASE WHEN :burst >= :cost THEN :burst - :cost ELSE :burst END, :now,
            :burst >= :cost)
    ON CONFLICT (key) DO UPDATE SET
        tokens = CASE WHEN {_REFILLED} >= :cost THEN {_REFILLED} - :cost ELSE {_REFILLED} END,
        allowed = {_REFILLED} >= :cost,
        updated_ms = CASE WHEN :now > rate_limits.updated_ms THEN :now
                          ELSE rate_limits.updated_ms END
    RETURNING tokens, allowed
    """
).bindparams(
    sa.bindparam("key", type_=sa.Text),
    sa.bindparam("now", type_=sa.BigInteger),
    sa.bindparam("rate", type_=sa.Float),
    sa.bindparam("burst", type_=sa.Float),
    sa.bindparam("cost", type_=sa.Float),
)
_PRUNE = sa.text("DELETE FROM rate_limits WHERE updated_ms < :before")


class RateLimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def take(
        self, key: str, cost: float, rate_per_ms: float, burst: float, now_ms: int
    ) -> tuple[bool, float]:
        """Take `cost` tokens from the bucket `key` if it holds them: (taken, tokens left)."""
        params = {"key": key, "now": now_ms, "rate": rate_per_ms, "burst": burst, "cost": cost}
        prune = random.randrange(_PRUNE_EVERY) == 0

        def txn(conn: Connection) -> tuple[bool, float]:
            tokens, allowed = conn.execute(_TAKE, params).one()
            if prune:
                conn.execute(_PRUNE, {"before": now_ms - IDLE_MS})
            return bool(allowed), float(tokens)

        return await self.db.write(txn)
