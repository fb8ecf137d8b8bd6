"""Several real `mxkeys serve` processes sharing one PostgreSQL database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import selected_backends
from tests.helpers import Api
from tests.processes import start_process


@pytest.fixture
def two_servers(
    request: pytest.FixtureRequest, new_database_url, tmp_path
) -> Iterator[tuple[str, str]]:
    if "postgres" not in selected_backends(request.config):
        pytest.skip("PostgreSQL backend not selected")
    url = new_database_url("postgres")
    first = start_process(url, str(tmp_path))
    second = start_process(url, str(tmp_path))
    try:
        yield first[1], second[1]
    finally:
        for process, _ in (first, second):
            process.terminate()
            process.wait(timeout=30)


def test_write_on_one_process_wakes_sync_on_another(two_servers) -> None:
    url_a, url_b = two_servers
    with Api(url_a) as a, Api(url_b) as b:
        alice = a.register()
        room_id = a.post("createRoom", alice, json={}).json()["room_id"]
        since = b.get("sync", alice).json()["next_batch"]

        def send_later() -> None:
            time.sleep(0.5)
            with Api(url_a) as other:
                other.put(f"rooms/{room_id}/send/m.room.message/x", alice, json={"body": "hi"})

        thread = threading.Thread(target=send_later)
        thread.start()
        started = time.monotonic()
        body = b.get("sync", alice, params={"since": since, "timeout": "30000"}).json()
        elapsed = time.monotonic() - started
        thread.join()
        assert elapsed < 5, elapsed
        events = body["rooms"]["join"][room_id]["timeline"]["events"]
        assert [e["content"]["body"] for e in events] == ["hi"]
        # A logout through one process revokes the token on the other at once.
        assert a.post("logout", alice).status_code == 200
        assert b.get("account/whoami", alice).status_code == 401


def test_serve_with_workers(request: pytest.FixtureRequest, new_database_url, tmp_path) -> None:
    """`mxkeys serve --workers 2`: both processes answer on one port, sharing state."""
    if "postgres" not in selected_backends(request.config):
        pytest.skip("PostgreSQL backend not selected")
    process, base = start_process(new_database_url("postgres"), str(tmp_path),
                                  args=["--workers", "2"])
    try:
        with Api(base) as api:
            users = [api.register() for _ in range(4)]
            for user in users:
                # Fresh connections, so requests spread over both workers.
                for _ in range(3):
                    assert httpx.get(f"{base}/_matrix/client/v3/account/whoami", headers={
                        "Authorization": f"Bearer {user.access_token}"}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
