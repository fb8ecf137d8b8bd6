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


class RequestTimeout:
    def __init__(self, app: ASGIApp, timeout_ms: int) -> None:
        self.app = app
        self.timeout_s = timeout_ms / 1000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = False
        deadline: asyncio.Timeout | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                if deadline is not None:
                    deadline.reschedule(loop.time() + self.timeout_s * STREAMING_FACTOR)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s + long_poll_seconds(scope)) as deadline:
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
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
