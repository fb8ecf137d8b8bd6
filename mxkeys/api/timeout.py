"""A deadline for every request: an answer within `request_timeout_ms`, whatever happens.

A request that has not started its response by then is cancelled and answered
`504 M_UNKNOWN` ("Request timed out"). A long-polling `/sync` gets its own timeout (at most
`services.sync.MAX_TIMEOUT_MS`) on top. A response that has started (a streamed backup
download) may take a further `STREAMING_FACTOR` times the timeout to finish; past that the
connection is closed, leaving the client with a truncated (invalid) response, never a hang.

A timed-out request may still complete what it was doing in the database (the storage thread
is not interrupted); like any gateway timeout, a 504 means "outcome unknown": clients retry,
and every write here is idempotent for a retry with the same content.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mxkeys.services.sync import MAX_TIMEOUT_MS

logger = logging.getLogger(__name__)

STREAMING_FACTOR = 5
_BODY = b'{"errcode":"M_UNKNOWN","error":"Request timed out"}'


def long_poll_seconds(scope: Scope) -> float:
    """The extra time a long-polling request asked for (`/sync?timeout=`)."""
    if not scope["path"].endswith("/sync"):
        return 0.0
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("timeout")
    if not values or not values[0].isdigit() or len(values[0]) > 12:
        return 0.0
    return min(int(values[0]), MAX_TIMEOUT_MS) / 1000


class _Request:
    """One request in flight: its task, its deadline, and where it is filed."""

    __slots__ = ("bucket", "expired", "started", "started_at", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.bucket = 0
        self.started = False
        self.started_at = 0.0
        self.expired = False


class RequestTimeout:
    """Deadlines kept on a timing wheel rather than a timer per request.

    An `asyncio.timeout()` per request (a timer handle made, moved when the response starts,
    and cancelled) cost about a third of a small request's time. Here a request is filed in
    the bucket of its deadline, rounded up to a tick (a second, or a quarter of the timeout
    if that is shorter), and one ticker cancels the requests of the buckets that have come
    due; filing and unfiling a request is a set operation. A deadline may therefore pass by up
    to one tick before it is enforced."""

    def __init__(self, app: ASGIApp, timeout_ms: int) -> None:
        self.app = app
        self.timeout_s = timeout_ms / 1000
        self.tick_s = min(1.0, self.timeout_s / 4)
        self._buckets: dict[int, set[_Request]] = {}
        self._ticker: asyncio.TimerHandle | None = None

    def _file(self, loop: asyncio.AbstractEventLoop, request: _Request, deadline: float) -> None:
        bucket = math.ceil(deadline / self.tick_s)
        request.bucket = bucket
        self._buckets.setdefault(bucket, set()).add(request)
        if self._ticker is None:
            self._ticker = loop.call_later(self.tick_s, self._tick, loop)

    def _unfile(self, request: _Request) -> None:
        bucket = self._buckets.get(request.bucket)
        if bucket is not None:
            bucket.discard(request)
            if not bucket:
                del self._buckets[request.bucket]

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for key in [k for k in self._buckets if k <= now / self.tick_s]:
            for request in self._buckets.pop(key):
                # A response that has started gets longer (once), counted from its start.
                extended = request.started_at + self.timeout_s * STREAMING_FACTOR
                if request.started and extended > now:
                    self._file(loop, request, extended)
                    continue
                request.expired = True
                request.task.cancel()
        self._ticker = loop.call_later(self.tick_s, self._tick, loop) if self._buckets else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        request = _Request(task)
        self._file(loop, request, loop.time() + self.timeout_s + long_poll_seconds(scope))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and not request.started:
                request.started = True
                request.started_at = loop.time()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if not request.expired:
                raise
            task.uncancel()
        else:
            if request.expired:
                # Finished as the deadline passed: take back the cancellation not delivered.
                task.uncancel()
            return
        finally:
            self._unfile(request)
        started = request.started
        logger.warning(
            "request timed out: %s %s (%s)",
            scope["method"],
            scope["path"][:200],
            "response cut off" if started else "answered 504",
        )
        if started:
            return  # the server closes the connection: the response stays incomplete
        await send(
            {
                "type": "http.response.start",
                "status": 504,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _BODY})
