"""Device key workloads: /keys/claim for many devices, /keys/query for many users, and
concurrent /keys/upload of one-time keys.

Keys are shaped like the real thing (32-byte base64 keys, 64-byte base64 signatures) but not
really signed: the server does not check one-time key signatures, and making them would be
client work. Registration, logins and the initial uploads are setup, not timed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

from benchmarks.common import (
    CLIENT,
    BenchClient,
    BenchContext,
    BenchError,
    BenchUser,
    Stopwatch,
    Workload,
    authorization,
    percentiles,
)
from benchmarks.http1 import Http1Connection

ALG = "signed_curve25519"
OTKS_PER_UPLOAD = 50
CONCURRENCY = 32


def b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode().rstrip("=")


def device_keys(device: BenchUser) -> dict[str, Any]:
    d = device.device_id
    return {
        "user_id": device.user_id,
        "device_id": d,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{d}": b64(32), f"ed25519:{d}": b64(32)},
        "signatures": {device.user_id: {f"ed25519:{d}": b64(64)}},
    }


def one_time_key(device: BenchUser, fallback: bool = False) -> dict[str, Any]:
    key: dict[str, Any] = {
        "key": b64(32),
        "signatures": {device.user_id: {f"ed25519:{device.device_id}": b64(64)}},
    }
    if fallback:
        key["fallback"] = True
    return key


def one_time_keys(device: BenchUser, count: int, prefix: str) -> dict[str, Any]:
    return {f"{ALG}:{prefix}{i:04}": one_time_key(device) for i in range(count)}


async def gather_limited(coros: list[Any], limit: int = 16) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def devices(client: BenchClient, users: int, per_user: int, prefix: str) -> list[BenchUser]:
    """`users` new users with `per_user` devices each (the registration's plus logins)."""
    registered = await client.register_many(users, prefix)
    extra = [client.login(u) for u in registered for _ in range(per_user - 1)]
    return registered + await gather_limited(extra)


async def upload(client: BenchClient, device: BenchUser, body: dict[str, Any]) -> dict[str, Any]:
    result = await client.call("POST", "keys/upload", device, json=body)
    if not isinstance(result.get("one_time_key_counts"), dict):
        raise BenchError(f"keys/upload: bad body {result}")
    return result


# -- /keys/claim --------------------------------------------------------------------------------


async def claim_many_devices(ctx: BenchContext) -> dict[str, Any]:
    """One /keys/claim naming `n` devices (each holding 50 one-time keys and a fallback key),
    repeated: every answer must hold one unseen one-time key per device."""
    n = ctx.scale(200, 10)
    rounds = ctx.scale(20, 3)
    client = ctx.client
    targets = await devices(client, n, 1, "claim")
    uploaded: dict[str, dict[str, Any]] = {}

    async def setup(device: BenchUser) -> None:
        keys = one_time_keys(device, OTKS_PER_UPLOAD, "k")
        uploaded[device.device_id] = keys
        body = {
            "device_keys": device_keys(device),
            "one_time_keys": keys,
            "fallback_keys": {f"{ALG}:fb": one_time_key(device, fallback=True)},
        }
        result = await upload(client, device, body)
        if result["one_time_key_counts"].get(ALG) != OTKS_PER_UPLOAD:
            raise BenchError(f"keys/upload: counts {result}")

    await gather_limited([setup(d) for d in targets])
    claimer = await client.register("claimer")
    wanted = {
        "one_time_keys": {d.user_id: {d.device_id: ALG} for d in targets},
        "timeout": 10_000,
    }
    body = json.dumps(wanted).encode()
    latencies: list[float] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(rounds):
        with Stopwatch() as sw:
            response = await client.timed("POST", "keys/claim", claimer, content=body)
        latencies.append(sw.seconds)
        if response.status != 200:
            raise BenchError(f"keys/claim: {response.status}: {response.body[:300]!r}")
        got = response.json()["one_time_keys"]
        for d in targets:
            keys = got.get(d.user_id, {}).get(d.device_id)
            if not isinstance(keys, dict) or len(keys) != 1:
                raise BenchError(f"keys/claim: {d.device_id}: {keys}")
            ((key_id, key),) = keys.items()
            name = key_id.partition(":")[2]
            if key != uploaded[d.device_id].get(key_id) or (d.device_id, name) in seen:
                raise BenchError(f"keys/claim: {d.device_id}: wrong or repeated key {key_id}")
            seen.add((d.device_id, name))
    return {"devices": n, "claims": rounds, **percentiles(latencies)}


# -- /keys/query --------------------------------------------------------------------------------


async def query_many_users(ctx: BenchContext) -> dict[str, Any]:
    """/keys/query for `users` users with two devices each (all their devices), repeated."""
    n_users = ctx.scale(500, 10)
    rounds = ctx.scale(30, 3)
    client = ctx.client
    all_devices = await devices(client, n_users, 2, "query")
    expected: dict[str, dict[str, dict[str, Any]]] = {}

    async def setup(device: BenchUser) -> None:
        keys = device_keys(device)
        expected.setdefault(device.user_id, {})[device.device_id] = keys
        await upload(client, device, {"device_keys": keys})

    await gather_limited([setup(d) for d in all_devices])
    asker = await client.register("asker")
    body = json.dumps({"device_keys": {u: [] for u in expected}}).encode()
    latencies: list[float] = []
    for _ in range(rounds):
        with Stopwatch() as sw:
            response = await client.timed("POST", "keys/query", asker, content=body)
        latencies.append(sw.seconds)
        if response.status != 200:
            raise BenchError(f"keys/query: {response.status}: {response.body[:300]!r}")
        got = response.json()["device_keys"]
        if set(got) != set(expected):
            raise BenchError(f"keys/query: {len(got)} users, not {len(expected)}")
        for user_id, by_device in expected.items():
            if set(got[user_id]) != set(by_device):
                raise BenchError(f"keys/query: wrong devices for {user_id}")
            for device_id, keys in by_device.items():
                shown = dict(got[user_id][device_id])
                if not isinstance(shown.pop("unsigned", None), dict) or shown != keys:
                    raise BenchError(f"keys/query: wrong keys for {device_id}")
    return {"users": n_users, "devices": len(all_devices), **percentiles(latencies)}


# -- /keys/upload -------------------------------------------------------------------------------


async def upload_concurrent(ctx: BenchContext) -> dict[str, Any]:
    """Many devices upload 50 fresh one-time keys per request at once; each device's uploads
    go one after another, so every answer's count is known. CONCURRENCY connections."""
    # 10 x 50 keys: a device ends holding 500 one-time keys, within mxkeys' default cap
    # (1,000) and Synapse's (500, a 400 M_TOO_LARGE above it). 304 x 10 = 3,040 uploads.
    n_devices = ctx.scale(304, 4)
    per_device = ctx.scale(10, 3)
    client = ctx.client
    uploaders = await devices(client, n_devices, 1, "upload")
    bodies = {
        d.device_id: [
            json.dumps({"one_time_keys": one_time_keys(d, OTKS_PER_UPLOAD, f"r{r}_")}).encode()
            for r in range(per_device)
        ]
        for d in uploaders
    }
    latencies: list[float] = []
    answers: list[tuple[BenchUser, int, int, bytes]] = []
    queue = list(reversed(uploaders))
    # Bare connections (`benchmarks/http1.py`), as in `BenchClient.timed`.
    connections = [Http1Connection(client.base_url) for _ in range(CONCURRENCY)]

    async def worker(conn: Http1Connection) -> None:
        # Each worker takes a device and sends its uploads one after another.
        while queue:
            device = queue.pop()
            for i, body in enumerate(bodies[device.device_id]):
                with Stopwatch() as sw:
                    response = await conn.request(
                        "POST", f"{CLIENT}/keys/upload", authorization(device), content=body
                    )
                latencies.append(sw.seconds)
                answers.append((device, i, response.status, response.body))

    try:
        with Stopwatch() as total:
            await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for conn in connections:
            conn.close()
    for device, i, status, text in answers:  # checked after the clock stopped
        if status != 200:
            raise BenchError(f"keys/upload: {status}: {text[:300]!r}")
        count = json.loads(text)["one_time_key_counts"].get(ALG)
        if count != OTKS_PER_UPLOAD * (i + 1):
            raise BenchError(f"keys/upload: {device.device_id}: count {count} after {i + 1}")
    uploads = n_devices * per_device
    return {
        "uploads": uploads,
        "keys_per_upload": OTKS_PER_UPLOAD,
        "uploads_per_s": round(uploads / total.seconds),
        "total_s": round(total.seconds, 3),
        **percentiles(latencies),
    }


WORKLOADS = [
    Workload(
        "keys_claim_200_devices",
        "POST /keys/claim naming 200 devices (50 one-time keys and a fallback key each)",
        claim_many_devices,
    ),
    Workload(
        "keys_query_1000_devices",
        "POST /keys/query for 500 users with 2 devices each",
        query_many_users,
    ),
    Workload(
        "keys_upload_concurrent",
        "concurrent POST /keys/upload of 50 one-time keys each",
        upload_concurrent,
    ),
]
