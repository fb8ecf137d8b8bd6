"""Periodic clean-up: expired user-interactive-auth sessions, old transaction IDs, and one-time
keys handed out by claims on SQLite (deleted at the device's next upload otherwise).

Every worker runs it; the deletions are idempotent, so doing them twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mxkeys.ids import now_ms
from mxkeys.storage.to_device import delete_transactions_before

if TYPE_CHECKING:
    from mxkeys.homeserver import HomeServer

logger = logging.getLogger(__name__)

INTERVAL_S = 3600
# A client retries a /sendToDevice within minutes; a week is far more than enough.
TXN_LIFETIME_MS = 7 * 24 * 3600 * 1000


async def clean_up_once(hs: HomeServer) -> None:
    now = now_ms()
    sessions = await hs.storage.uia.delete_sessions_before(
        now - hs.config.uia_session_lifetime_ms
    )
    txns = await delete_transactions_before(hs.db, now - TXN_LIFETIME_MS)
    claimed = await hs.storage.device_keys.delete_claimed_keys()
    if sessions or txns or claimed:
        logger.info(
            "housekeeping: %d expired UIA sessions, %d old transaction IDs, %d claimed one-time "
            "keys removed", sessions, txns, claimed,
        )


async def run_forever(hs: HomeServer, interval_s: float = INTERVAL_S) -> None:
    while True:
        try:
            await clean_up_once(hs)
        except Exception:
            logger.exception("housekeeping failed; retrying at the next interval")
        await asyncio.sleep(interval_s)
