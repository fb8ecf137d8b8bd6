"""Server-side key backup workloads: bulk upload, non-replacing re-upload, downloads.

A backup of `sessions` megolm sessions spread over `rooms` rooms, uploaded with
`PUT /room_keys/keys` in batches of 200 (what Element-style clients send). Session data is
shaped like the real thing: an ephemeral key, ~680 characters of base64 ciphertext, a MAC.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    BenchClient,
    BenchContext,
    BenchError,
    BenchUser,
    Stopwatch,
    Workload,
    percentiles,
)

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
BATCH = 200


def b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode().rstrip("=")


@dataclass
class Backup:
    user: BenchUser
    version: str
    # room -> session -> key, in upload order.
    keys: dict[str, dict[str, dict[str, Any]]]

    @property
    def count(self) -> int:
        return sum(len(sessions) for sessions in self.keys.values())

    def batches(self, first_message_index: int = 0) -> list[bytes]:
        """Pre-encoded PUT /room_keys/keys bodies of BATCH sessions each (encoding them is
        the client's work, not timed)."""
        flat = [(room, s, k) for room, sessions in self.keys.items() for s, k in sessions.items()]
        bodies = []
        for start in range(0, len(flat), BATCH):
            rooms: dict[str, dict[str, Any]] = {}
            for room, session, key in flat[start : start + BATCH]:
                key = {
                    **key,
                    "first_message_index": key["first_message_index"] + first_message_index,
                }
                rooms.setdefault(room, {"sessions": {}})["sessions"][session] = key
            bodies.append(json.dumps({"rooms": rooms}).encode())
        return bodies


def sizes(ctx: BenchContext) -> tuple[int, int]:
    """(sessions, rooms)."""
    return ctx.scale(20_000, 400), ctx.scale(50, 4)


async def new_backup(ctx: BenchContext) -> Backup:
    """A fresh user with a new (empty) backup version and keys to put in it. Setup."""
    sessions, rooms = sizes(ctx)
    user = await ctx.client.register("roomkeys")
    created = await ctx.client.call(
        "POST",
        "room_keys/version",
        user,
        json={"algorithm": ALGORITHM, "auth_data": {"public_key": b64(32), "signatures": {}}},
    )
    keys: dict[str, dict[str, dict[str, Any]]] = {}
    for i in range(sessions):
        room = f"!room{i % rooms:03}:bench.example"
        keys.setdefault(room, {})[b64(32)] = {
            "first_message_index": i % 7,
            "forwarded_count": i % 3,
            "is_verified": i % 2 == 0,
            "session_data": {"ephemeral": b64(32), "ciphertext": b64(512), "mac": b64(8)},
        }
    return Backup(user, created["version"], keys)


async def put_batches(
    client: BenchClient, backup: Backup, bodies: list[bytes], latencies: list[float] | None
) -> list[dict[str, Any]]:
    """PUT each body in turn, checking every response."""
    results = []
    for body in bodies:
        with Stopwatch() as sw:
            response = await client.timed(
                "PUT",
                "room_keys/keys",
                backup.user,
                params={"version": backup.version},
                content=body,
            )
        if latencies is not None:
            latencies.append(sw.seconds)
        if response.status != 200:
            raise BenchError(f"PUT room_keys/keys: {response.status}: {response.body[:300]!r}")
        result = response.json()
        if not isinstance(result.get("etag"), str) or not isinstance(result.get("count"), int):
            raise BenchError(f"PUT room_keys/keys: bad body {result}")
        results.append(result)
    return results


async def uploaded_backup(ctx: BenchContext) -> Backup:
    backup = await new_backup(ctx)
    await put_batches(ctx.client, backup, backup.batches(), None)
    return backup


async def version_state(client: BenchClient, backup: Backup) -> dict[str, Any]:
    return await client.call("GET", f"room_keys/version/{backup.version}", backup.user)


def check_sessions(got: Any, expected: dict[str, dict[str, Any]], where: str) -> None:
    if not isinstance(got, dict) or set(got) != set(expected):
        raise BenchError(f"{where}: wrong sessions ({len(got)} vs {len(expected)})")
    for session, key in expected.items():
        if got[session] != key:
            raise BenchError(f"{where}: session {session} differs: {got[session]} != {key}")


# -- workloads -------------------------------------------------------------------------------


async def upload(ctx: BenchContext) -> dict[str, Any]:
    backup = await new_backup(ctx)
    bodies = backup.batches()
    latencies: list[float] = []
    with Stopwatch() as sw:
        results = await put_batches(ctx.client, backup, bodies, latencies)
    counts = [r["count"] for r in results]
    expected = [min(backup.count, BATCH * (i + 1)) for i in range(len(bodies))]
    if counts != expected:
        raise BenchError(f"counts after each batch {counts[:5]}... != {expected[:5]}...")
    if len({r["etag"] for r in results}) != len(results):
        raise BenchError("an upload that inserted keys did not change the etag")
    state = await version_state(ctx.client, backup)
    if state["count"] != backup.count or state["etag"] != results[-1]["etag"]:
        raise BenchError(f"version state after upload: {state}")
    return {
        "sessions": backup.count,
        "batches": len(bodies),
        "sessions_per_s": round(backup.count / sw.seconds),
        "total_s": round(sw.seconds, 3),
        **percentiles(latencies),
    }


async def reupload_no_replace(ctx: BenchContext) -> dict[str, Any]:
    """Upload the same sessions again with a higher first_message_index (and otherwise the
    same metadata): nothing may be replaced, the etag and count must stay."""
    backup = await uploaded_backup(ctx)
    before = await version_state(ctx.client, backup)
    bodies = backup.batches(first_message_index=1)
    latencies: list[float] = []
    with Stopwatch() as sw:
        results = await put_batches(ctx.client, backup, bodies, latencies)
    for result in results:
        if result["etag"] != before["etag"] or result["count"] != backup.count:
            raise BenchError(f"re-upload changed the backup: {result} vs {before}")
    after = await version_state(ctx.client, backup)
    if (after["etag"], after["count"]) != (before["etag"], before["count"]):
        raise BenchError(f"re-upload changed the backup: {after} vs {before}")
    return {
        "sessions": backup.count,
        "sessions_per_s": round(backup.count / sw.seconds),
        "total_s": round(sw.seconds, 3),
        **percentiles(latencies),
    }


async def download_all(ctx: BenchContext) -> dict[str, Any]:
    backup = await uploaded_backup(ctx)
    rounds = ctx.scale(5, 2)
    latencies: list[float] = []
    size = 0
    for _ in range(rounds):
        # Timed: the request and reading the whole body. Checking it is not.
        with Stopwatch() as sw:
            response = await ctx.client.timed(
                "GET", "room_keys/keys", backup.user, params={"version": backup.version}
            )
        latencies.append(sw.seconds)
        if response.status != 200:
            raise BenchError(f"GET room_keys/keys: {response.status}: {response.body[:300]!r}")
        size = len(response.body)
        rooms = response.json()["rooms"]
        if set(rooms) != set(backup.keys):
            raise BenchError(f"GET room_keys/keys: {len(rooms)} rooms, not {len(backup.keys)}")
        for room, sessions in backup.keys.items():
            check_sessions(rooms[room]["sessions"], sessions, f"room {room}")
    return {
        "sessions": backup.count,
        "body_mib": round(size / 2**20, 2),
        "best_ms": round(min(latencies) * 1000, 1),
        **percentiles(latencies),
    }


async def download_per_room(ctx: BenchContext) -> dict[str, Any]:
    backup = await uploaded_backup(ctx)
    latencies: list[float] = []
    with Stopwatch() as sw:
        for room, sessions in backup.keys.items():
            with Stopwatch() as one:
                response = await ctx.client.timed(
                    "GET",
                    f"room_keys/keys/{room.replace('!', '%21').replace(':', '%3A')}",
                    backup.user,
                    params={"version": backup.version},
                )
            latencies.append(one.seconds)
            if response.status != 200:
                raise BenchError(f"GET room keys: {response.status}: {response.body[:300]!r}")
            check_sessions(response.json()["sessions"], sessions, f"room {room}")
    return {
        "rooms": len(backup.keys),
        "sessions": backup.count,
        "rooms_per_s": round(len(backup.keys) / sw.seconds, 1),
        **percentiles(latencies),
    }


WORKLOADS = [
    Workload(
        "room_keys_upload",
        "key backup: upload 20,000 sessions over 50 rooms in PUT batches of 200",
        upload,
    ),
    Workload(
        "room_keys_reupload",
        "key backup: re-upload all sessions with metadata that must not replace (etag stays)",
        reupload_no_replace,
    ),
    Workload(
        "room_keys_download_all",
        "key backup: GET /room_keys/keys of 20,000 sessions",
        download_all,
    ),
    Workload(
        "room_keys_download_per_room",
        "key backup: GET /room_keys/keys/{roomId} for each of 50 rooms",
        download_per_room,
    ),
]
