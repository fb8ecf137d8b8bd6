"""`services/notifier.py`: closing answers every waiting sync and lets none wait after."""

from __future__ import annotations

import asyncio
import time

from mxkeys.services.notifier import Notifier


def test_close_wakes_waiters_and_later_syncs_do_not_wait() -> None:
    async def main() -> None:
        notifier = Notifier()
        waiting = [asyncio.create_task(notifier.wait(f"@u{i}:x", 0, 60)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in waiting)
        notifier.close()
        assert await asyncio.gather(*waiting) == [None, None, None]  # as on a timeout
        started = time.monotonic()
        assert await notifier.wait("@late:x", 0, 60) is None
        assert time.monotonic() - started < 0.5
        # A change that came before the sync looked is still news, closed or not.
        notifier.notify_users(["@u0:x"], ["to_device"])
        assert await notifier.wait("@u0:x", 0, 60) == {"*"}

    asyncio.run(main())
