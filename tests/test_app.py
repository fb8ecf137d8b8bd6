"""`mxkeys/app.py`: a server told to stop answers its waiting long-polls at once, then exits;
what starting built stays out of the collector's full passes while it serves."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
from typing import Any

import pytest

from mxkeys.app import create_app
from tests import conftest
from tests.helpers import Api
from tests.processes import start_process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_answers_waiting_long_polls(
    new_database_url, tmp_path, backend: str, signum: int
) -> None:
    """Not cut off after the server's graceful-shutdown delay (uvicorn's 500 and a logged
    traceback): a 200 with the same position, at once, and the process is gone soon after."""
    process, url = start_process(new_database_url(backend), str(tmp_path))
    try:
        with Api(url) as api:
            user = api.register()
            since = api.get("sync", user).json()["next_batch"]
        answers: list[Any] = []

        def long_poll() -> None:
            with Api(url) as own:
                params = {"since": since, "timeout": "60000"}
                response = own.get("sync", user, params=params)
                answers.append((response.status_code, response.json(), time.monotonic()))

        poll = threading.Thread(target=long_poll)
        poll.start()
        time.sleep(1)  # the sync is waiting now
        assert not answers
        stopped_at = time.monotonic()
        process.send_signal(signum)
        poll.join(timeout=30)
        status, body, answered_at = answers[0]
        assert status == 200 and body["next_batch"] == since
        assert answered_at - stopped_at < 2
        # (uvicorn stops gracefully, then raises the signal again: a SIGTERM ends the
        # process by that signal, as it would without a handler.)
        assert process.wait(timeout=30) in (0, -signum)
        assert time.monotonic() - stopped_at < 4.5  # before uvicorn's 5 s grace would end
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_what_starting_built_is_kept_out_of_full_collections(new_database_url) -> None:
    """Frozen once the server has started (full collections then skip it), given back to the
    collector when it stops."""
    app = create_app(conftest.test_config(new_database_url("sqlite")))
    messages: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    frozen_while_serving: list[int] = []

    async def send(message: dict[str, str]) -> None:
        if message["type"] == "lifespan.startup.complete":
            frozen_while_serving.append(gc.get_freeze_count())
            await messages.put({"type": "lifespan.shutdown"})

    async def run() -> None:
        await messages.put({"type": "lifespan.startup"})
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send)

    asyncio.run(run())
    assert frozen_while_serving and frozen_while_serving[0] > 10_000
    assert gc.get_freeze_count() == 0
