"""`GET /room_keys/keys` streams its JSON: the server's memory grows by far less than the
response while a large backup is downloaded (measured on a server process of its own, with
Linux's peak-RSS counter reset right before the download)."""

from __future__ import annotations

import base64
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import Api
from tests.test_multiprocess import start_process

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
SESSIONS = 20_000
ROOMS = 50
BATCH = 1_000
STORAGE_THREADS = 8  # the server's storage thread pool (`storage.database.Database`)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode().rstrip("=")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_download_memory_stays_well_below_the_response_size(
    new_database_url, tmp_path, backend: str
) -> None:
    process, base = start_process(new_database_url(backend), str(tmp_path))
    try:
        with Api(base) as api:
            user = api.register()
            body = {"algorithm": ALGORITHM, "auth_data": {"public_key": _b64(32)}}
            version = api.post("room_keys/version", user, json=body).json()["version"]
            for start in range(0, SESSIONS, BATCH):
                rooms: dict[str, dict[str, dict[str, object]]] = {}
                for i in range(start, start + BATCH):
                    sessions = rooms.setdefault(f"!r{i % ROOMS}:localhost", {"sessions": {}})
                    sessions["sessions"][f"s{i}"] = {
                        "first_message_index": 0,
                        "forwarded_count": 0,
                        "is_verified": False,
                        "session_data": {"ephemeral": _b64(32), "ciphertext": _b64(600),
                                         "mac": _b64(8)},
                    }
                response = api.put("room_keys/keys", user, json={"rooms": rooms},
                                   params={"version": version})
                assert response.status_code == 200, response.text

            # Warm up (first-use allocations are not the download's), then measure. Downloads
            # at once, so that every storage thread has served one: a thread's first rows
            # grow its own malloc arena, about 2 MiB that would otherwise be counted when the
            # measured download lands on a thread that has not read any yet.
            params = {"version": version}
            with ThreadPoolExecutor(STORAGE_THREADS) as pool:
                warm = list(pool.map(
                    lambda _: httpx.get(
                        f"{base}/_matrix/client/v3/room_keys/keys", params=params, timeout=60,
                        headers={"Authorization": f"Bearer {user.access_token}"},
                    ).status_code,
                    range(STORAGE_THREADS),
                ))
            assert warm == [200] * STORAGE_THREADS
            before = _status_kib(process.pid, "VmRSS")
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            with httpx.Client(base_url=base, timeout=60) as http:
                response = http.get(
                    "/_matrix/client/v3/room_keys/keys", params=params,
                    headers={"Authorization": f"Bearer {user.access_token}"},
                )
            growth_kib = _status_kib(process.pid, "VmHWM") - before
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert response.status_code == 200
    size_kib = len(response.content) // 1024
    rooms_got = response.json()["rooms"]
    assert sum(len(r["sessions"]) for r in rooms_got.values()) == SESSIONS
    assert size_kib > 15_000
    # Building the response in memory would take more than its size; streaming holds one
    # batch of rows (`storage.room_keys.STREAM_BATCH`) at a time.
    print(f"\nbackup download: {size_kib} KiB sent, server peak RSS grew {growth_kib} KiB")
    assert growth_kib < size_kib / 10, (growth_kib, size_kib)
