"""Wakes long-polling `/sync` requests when something new exists for a user.

Each user has a change counter. A sync reads the counter *before* it looks for news in the
database, then waits for the counter to move; a write bumps the counters of everyone it
concerns *after* its transaction commits. So a change that commits after the sync looked is
always seen by the wait: no lost wake-ups. A notification names the streams that changed
(events, account_data, device_lists, to_device), so a woken sync rebuilds only those parts;
no names means "anything may have changed". Another process's writes arrive through
`notify_users` too (PostgreSQL LISTEN/NOTIFY feeds it; see `storage.notifications`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from mxkeys.metrics import SYNC_WAITING

ALL_STREAMS = "*"


class _Waiter:
    """One waiting sync: a future resolved by the first notification, and the streams named
    by every notification until the sync resumes (they are gathered while it is queued)."""

    __slots__ = ("future", "streams")

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.streams: set[str] = set()


class Notifier:
    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._waiters: dict[str, set[_Waiter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Set when another process must hear about local changes (PostgreSQL NOTIFY).
        self.publish: Callable[[list[str], list[str]], None] | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def counter(self, user_id: str) -> int:
        return self._counters.get(user_id, 0)

    def notify_users(
        self,
        user_ids: Iterable[str],
        streams: Iterable[str] | None = None,
        publish: bool = True,
    ) -> None:
        """Wake every sync of these users (call after the change has committed)."""
        users = list(dict.fromkeys(user_ids))
        names = sorted(set(streams)) if streams is not None else [ALL_STREAMS]
        for user_id in users:
            self._counters[user_id] = self._counters.get(user_id, 0) + 1
            for waiter in self._waiters.get(user_id, ()):
                waiter.streams.update(names)
                if not waiter.future.done():
                    waiter.future.set_result(True)
        if publish and users and self.publish is not None:
            self.publish(users, names)

    def close(self) -> None:
        """The server is stopping: every waiting sync answers now with what it has (as on a
        timeout), and syncs that come later do not wait."""
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_result(False)

    def notify_users_threadsafe(self, user_ids: list[str], streams: list[str]) -> None:
        """`notify_users` from another thread (the LISTEN thread), without re-publishing."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.notify_users, user_ids, streams, False)

    async def wait(self, user_id: str, seen: int, timeout_s: float) -> set[str] | None:
        """Wait until the user's counter moves past `seen`. Returns the streams named by the
        notifications (`{"*"}` when unknown), or None on timeout.

        One future per waiter, resolved directly by `notify_users` (or by a timer on
        timeout): waking hundreds of syncs at once costs one step of each, not a task and a
        timeout handle per wait."""
        if self.counter(user_id) != seen:
            return {ALL_STREAMS}
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        waiter = _Waiter(future)
        waiters = self._waiters.setdefault(user_id, set())
        waiters.add(waiter)
        timer = loop.call_later(max(timeout_s, 0.0), _expire, future)
        SYNC_WAITING.inc()
        try:
            notified = await future
            # Streams named by notifications that came before this sync resumed are all
            # here; later ones move the counter the caller reads next.
            return set(waiter.streams) if notified or waiter.streams else None
        finally:
            SYNC_WAITING.dec()
            timer.cancel()
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(user_id, None)


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
