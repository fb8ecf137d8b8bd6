"""`mxkeys/app.py`: a server told to stop answers its waiting long-polls at once, then exits."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

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
