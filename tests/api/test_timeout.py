"""`api/timeout.py`: every request answered in bounded time, deadlines on a timing wheel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mxkeys.api.timeout import STREAMING_FACTOR, RequestTimeout

Message = dict[str, Any]


async def _run(app: RequestTimeout, path: str = "/x", query: bytes = b"") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)
        return {}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query}
    await app(scope, receive, send)
    return sent


def _app(delay_s: float, start_first: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(delay_s)
        if not start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_fast_requests_pass_and_leave_nothing_filed() -> None:
    middleware = RequestTimeout(_app(0), timeout_ms=200)

    async def main() -> list[list[Message]]:
        return await asyncio.gather(*(_run(middleware) for _ in range(50)))

    for sent in asyncio.run(main()):
        assert [m.get("status") for m in sent] == [200, None]
    assert middleware._buckets == {}


def test_a_slow_request_is_answered_504_within_a_tick_of_its_deadline() -> None:
    middleware = RequestTimeout(_app(30), timeout_ms=200)
    started = time.monotonic()
    sent = asyncio.run(_run(middleware))
    elapsed = time.monotonic() - started
    assert sent[0]["status"] == 504
    assert b"M_UNKNOWN" in sent[1]["body"]
    assert 0.2 <= elapsed < 0.2 + middleware.tick_s + 0.5
    assert middleware._buckets == {}


def test_a_started_response_gets_longer_then_is_cut_off() -> None:
    middleware = RequestTimeout(_app(30, start_first=True), timeout_ms=100)
    started = time.monotonic()
    sent = asyncio.run(_run(middleware))
    elapsed = time.monotonic() - started
    assert [m.get("status") for m in sent] == [200]  # no body: the connection closes
    assert 0.1 * STREAMING_FACTOR <= elapsed < 0.1 * STREAMING_FACTOR + 0.5


def test_a_long_poll_has_its_own_timeout_on_top() -> None:
    middleware = RequestTimeout(_app(0.5), timeout_ms=200)
    sent = asyncio.run(_run(middleware, "/_matrix/client/v3/sync", b"timeout=1000"))
    assert sent[0]["status"] == 200
