"""Crash safety: `mxkeys serve` killed with SIGKILL, right after acknowledged writes and in the
middle of in-flight ones, then restarted on the same data (an SQLite file; a PostgreSQL
database).

After every restart: every acknowledged write is there; counts are exact (a backup's `count`
is the number of keys it really holds, a device's one-time-key count is what it holds);
and a write that was in flight is there entirely or not at all, never in part.

Writers are sequential per device and per backup stream, so each has at most one request in
flight when the process dies: each device then holds (acknowledged + 0 or 1) batches of keys,
and the backup each acknowledged batch plus, per writer, its in-flight batch whole or not.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e_keys import new_device
from tests.helpers import Api, User
from tests.test_multiprocess import start_process

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
OTK_BATCH = 10
BACKUP_BATCH = 25
# Seconds between starting the in-flight writers and the kill (0: right after the
# acknowledged writes, nothing in flight).
KILL_DELAYS = (0.0, 0.05, 0.15, 0.3)


def key(i: int) -> dict[str, Any]:
    return {
        "first_message_index": i,
        "forwarded_count": 0,
        "is_verified": False,
        "session_data": {"ciphertext": f"c{i}", "mac": "m", "ephemeral": "e"},
    }


@dataclass
class Writer:
    """One sequential stream of writes; `acked` batches were answered 200."""

    name: str
    acked: list[list[str]] = field(default_factory=list)
    in_flight: list[str] | None = None


def backup_writer(url: str, user: User, version: str, writer: Writer, stop: threading.Event,
                  round_no: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        n = 0
        while not stop.is_set():
            sessions = [f"r{round_no}-{writer.name}-{n}-{i}" for i in range(BACKUP_BATCH)]
            body = {"rooms": {"!crash:localhost": {"sessions": {s: key(1) for s in sessions}}}}
            writer.in_flight = sessions
            try:
                response = http.put(
                    "/_matrix/client/v3/room_keys/keys", params={"version": version}, json=body,
                    headers={"Authorization": f"Bearer {user.access_token}"},
                )
            except httpx.HTTPError:
                return  # killed: this batch's fate is unknown
            assert response.status_code == 200, response.text
            writer.acked.append(sessions)
            writer.in_flight = None
            n += 1


def otk_writer(url: str, device: Any, writer: Writer, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        n = 0
        while not stop.is_set():
            keys = device.otks(OTK_BATCH, prefix=f"{writer.name}-{n}-")
            writer.in_flight = list(keys)
            try:
                response = http.post(
                    "/_matrix/client/v3/keys/upload", json={"one_time_keys": keys},
                    headers={"Authorization": f"Bearer {device.user.access_token}"},
                )
            except httpx.HTTPError:
                return
            assert response.status_code == 200, response.text
            writer.acked.append(list(keys))
            writer.in_flight = None
            n += 1


def kill(process: Any) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_loses_nothing_acknowledged_and_half_stores_nothing(
    request: pytest.FixtureRequest, new_database_url, tmp_path, kind: str
) -> None:
    from tests.conftest import selected_backends

    if kind not in selected_backends(request.config):
        pytest.skip(f"{kind} backend not selected")
    url = new_database_url(kind)
    process, base = start_process(url, str(tmp_path))
    try:
        with Api(base) as api:
            user = api.register()
            body = {"algorithm": ALGORITHM, "auth_data": {"public_key": "k"}}
            version = api.post("room_keys/version", user, json=body).json()["version"]
            devices = [new_device(api.login(user)) for _ in range(3)]
        backup_writers: list[Writer] = []
        otk_writers: dict[str, list[Writer]] = {d.device_id: [] for d in devices}

        for round_no, delay in enumerate(KILL_DELAYS):
            # Acknowledged writes, one at a time.
            with Api(base) as api:
                acked = Writer(f"seq{round_no}")
                sessions = [f"seq{round_no}-{i}" for i in range(BACKUP_BATCH)]
                body = {"rooms": {"!crash:localhost": {"sessions": {s: key(0) for s in sessions}}}}
                response = api.put("room_keys/keys", user, json=body, params={"version": version})
                assert response.status_code == 200, response.text
                acked.acked.append(sessions)
                backup_writers.append(acked)
                for d in devices:
                    w = Writer(f"seq{round_no}")
                    keys = d.otks(OTK_BATCH, prefix=f"seq{round_no}-")
                    response = api.post("keys/upload", d.user, json={"one_time_keys": keys})
                    assert response.status_code == 200, response.text
                    w.acked.append(list(keys))
                    otk_writers[d.device_id].append(w)
            # In-flight writes, then the kill.
            stop = threading.Event()
            threads = []
            if delay:
                for i in range(3):
                    w = Writer(f"b{i}")
                    backup_writers.append(w)
                    threads.append(threading.Thread(
                        target=backup_writer, args=(base, user, version, w, stop, round_no)))
                for d in devices:
                    w = Writer(f"o{round_no}")
                    otk_writers[d.device_id].append(w)
                    threads.append(threading.Thread(target=otk_writer, args=(base, d, w, stop)))
                for t in threads:
                    t.start()
                time.sleep(delay)
            kill(process)
            stop.set()
            for t in threads:
                t.join(timeout=15)
            process, base = start_process(url, str(tmp_path))
            check(base, user, version, devices, backup_writers, otk_writers)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def check(base: str, user: User, version: str, devices: list[Any],
          backup_writers: list[Writer], otk_writers: dict[str, list[Writer]]) -> None:
    with Api(base) as api:
        info = api.get(f"room_keys/version/{version}", user).json()
        everything = api.get("room_keys/keys", user, params={"version": version}).json()
        stored = set(everything["rooms"].get("!crash:localhost", {}).get("sessions", {}))
        assert info["count"] == len(stored)
        expected: set[str] = set()
        for w in backup_writers:
            for batch in w.acked:
                assert set(batch) <= stored, f"{w.name}: acknowledged keys lost"
                expected.update(batch)
            if w.in_flight is not None:
                landed = set(w.in_flight) & stored
                assert landed in (set(), set(w.in_flight)), f"{w.name}: half-stored batch"
                expected.update(landed)
                w.acked.append(w.in_flight) if landed else None
                w.in_flight = None
        assert stored == expected, "keys nobody sent"

        for d in devices:
            counts = api.post("keys/upload", d.user, json={}).json()["one_time_key_counts"]
            count = counts.get("signed_curve25519", 0)
            acked = sum(len(b) for w in otk_writers[d.device_id] for b in w.acked)
            in_flight = [w for w in otk_writers[d.device_id] if w.in_flight is not None]
            # Each writer of this device had at most one batch in flight: whole or absent.
            extra = count - acked
            assert extra >= 0, f"{d.device_id}: acknowledged one-time keys lost"
            assert extra % OTK_BATCH == 0 and extra // OTK_BATCH <= len(in_flight), (
                f"{d.device_id}: {extra} unacknowledged keys is not whole batches"
            )
            # Account for what landed so the next round's totals stay exact.
            landed = extra // OTK_BATCH
            for w in in_flight:
                if landed:
                    w.acked.append(w.in_flight or [])
                    landed -= 1
                w.in_flight = None
