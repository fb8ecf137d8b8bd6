"""`GET /metrics` (with `enable_metrics`): the HTTP figures of the edge, and what mxkeys itself
counts (`mxkeys/metrics.py`): waiting long-polls and to-device messages."""

from __future__ import annotations

import re
import threading
import time

from tests.helpers import Api, assert_error


def _value(api: Api, name: str, labels: str = "") -> float:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", response.text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_are_off_by_default(api: Api) -> None:
    assert_error(api.get("/metrics"), 404, "M_UNRECOGNIZED")


def test_http_requests_are_counted(backend: str, server_factory) -> None:
    server = server_factory(backend, enable_metrics=True)
    with Api(server.base_url) as api:
        name = "mxkeys_http_requests_total"
        labels = '{method="GET",route="/_matrix/client/versions",status="200"}'
        before = _value(api, name, labels)
        for _ in range(3):
            assert api.get("/_matrix/client/versions").status_code == 200
        assert _value(api, name, labels) == before + 3


def test_waiting_syncs_and_to_device_messages(backend: str, server_factory) -> None:
    server = server_factory(backend, enable_metrics=True)
    with Api(server.base_url) as api:
        alice, bob = api.register(), api.register()
        since = api.get("sync", bob).json()["next_batch"]
        queued = _value(api, "mxkeys_to_device_messages_queued_total")
        remote = _value(api, "mxkeys_to_device_messages_remote_total")
        waiting = _value(api, "mxkeys_sync_waiting")

        answers: list[int] = []

        def long_poll() -> None:
            with Api(server.base_url) as own:  # (a client of its own, in its own thread)
                params = {"since": since, "timeout": "20000"}
                answers.append(own.get("sync", bob, params=params).status_code)

        poll = threading.Thread(target=long_poll)
        poll.start()
        deadline = time.monotonic() + 10
        while _value(api, "mxkeys_sync_waiting") < waiting + 1:
            assert time.monotonic() < deadline, "the long-poll never showed as waiting"
            time.sleep(0.05)

        messages = {bob.user_id: {"*": {"n": 1}}, "@carol:elsewhere.example": {"D": {"n": 1}}}
        body = {"messages": messages}
        assert api.put("sendToDevice/m.test/t1", alice, json=body).status_code == 200
        assert api.put("sendToDevice/m.test/t1", alice, json=body).status_code == 200  # retry
        poll.join(timeout=10)
        assert answers == [200]
        assert _value(api, "mxkeys_sync_waiting") == waiting
        assert _value(api, "mxkeys_to_device_messages_queued_total") == queued + 1
        assert _value(api, "mxkeys_to_device_messages_remote_total") == remote + 1
