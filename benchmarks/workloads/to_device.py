"""To-device fan-out: one `PUT /sendToDevice` to 200 devices, timed until every recipient's
waiting `/sync` has returned the message (end-to-end delivery latency, p50/p95).

Each recipient device long-polls on its own keep-alive connection, as a real device does
(`benchmarks.http1`, not one shared httpx pool: httpx scans its whole pool on every request
and response, which with 200 long-polls made the client, not the server, the bottleneck).
A delivery is timed when the last byte of the `/sync` response carrying the message is read,
before the client decodes it; every response is then decoded and checked (status 200,
`next_batch`, the message in `to_device.events` with its sender, type and content).

While the messages go out, the server and this client run on different CPUs
(`servers.cpus_apart`; `--share-cpus` turns it off): on a shared CPU the client, woken by
every response, keeps pre-empting the server, which real recipients elsewhere never do."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from typing import Any

from benchmarks.common import CLIENT, BenchContext, BenchError, BenchUser, Workload
from benchmarks.http1 import Http1Connection, RawResponse
from benchmarks.servers import cpus_apart


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fan_out(ctx: BenchContext) -> dict[str, Any]:
    users = ctx.scale(100, 5)
    devices_per_user = 2
    rounds = ctx.scale(5, 2)
    client = ctx.client
    sender = await client.register("td_sender")
    first_devices = await client.register_many(users, "td_rcpt")
    recipients: list[BenchUser] = list(first_devices)
    for extra in range(devices_per_user - 1):
        del extra
        recipients += await asyncio.gather(*(client.login(u) for u in first_devices))
    # Every device keeps a sync waiting on its own connection.
    connections = {r.access_token: Http1Connection(client.base_url) for r in recipients}

    async def sync(device: BenchUser, params: dict[str, str]) -> tuple[RawResponse, Any]:
        response = await connections[device.access_token].request(
            "GET", f"{CLIENT}/sync", params=params,
            headers={"Authorization": f"Bearer {device.access_token}"},
        )
        if response.status != 200:
            raise BenchError(f"GET sync: expected 200, got {response.status}: "
                             f"{response.body[:300]!r}")
        body = response.json()
        if not isinstance(body.get("next_batch"), str):
            raise BenchError("GET sync: no next_batch in the response")
        return response, body

    try:
        tokens = await asyncio.gather(*(sync(r, {"timeout": "0"}) for r in recipients))
        since = {
            r.access_token: body["next_batch"]
            for r, (_, body) in zip(recipients, tokens, strict=True)
        }
        latencies: list[float] = []
        send_ms: list[float] = []
        await client.timed("GET", "account/whoami", sender)  # opens the sender's connection

        async def wait_for(device: BenchUser, marker: str, round_number: int) -> float:
            """When the device's long-polls got the round's message (checked as sent)."""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                response, body = await sync(
                    device, {"since": since[device.access_token], "timeout": "30000"}
                )
                since[device.access_token] = body["next_batch"]
                for event in body.get("to_device", {}).get("events", []):
                    if event.get("content", {}).get("marker") != marker:
                        continue
                    if event.get("sender") != sender.user_id or (
                        event.get("type") != "m.bench.fanout"
                    ) or event["content"] != {"marker": marker, "round": round_number}:
                        raise BenchError(f"a to-device message arrived altered: {event}")
                    return response.received_at
            raise BenchError("a to-device message was not delivered within 30 s")

        with cpus_apart(ctx.server_pid):
            for round_number in range(rounds):
                marker = secrets.token_hex(4)
                waiters = [
                    asyncio.create_task(wait_for(d, marker, round_number)) for d in recipients
                ]
                # Let every sync reach the server and start waiting (not timed).
                await asyncio.sleep(ctx.scale(2, 0.5))
                messages: dict[str, dict[str, Any]] = {}
                for device in recipients:
                    messages.setdefault(device.user_id, {})[device.device_id] = {
                        "marker": marker, "round": round_number,
                    }
                body = json.dumps({"messages": messages}).encode()
                # Timed from when the request goes out (on a bare connection, like every timed
                # request: `BenchClient.timed`), not from when the client starts encoding it.
                sent_at = time.perf_counter()
                sent = await client.timed(
                    "PUT", f"sendToDevice/m.bench.fanout/{marker}", sender, content=body
                )
                send_ms.append((sent.received_at - sent_at) * 1000)
                if sent.status != 200:
                    raise BenchError(f"PUT sendToDevice: {sent.status}: {sent.body[:300]!r}")
                arrivals = await asyncio.gather(*waiters)
                latencies += [(t - sent_at) * 1000 for t in arrivals]
    finally:
        for connection in connections.values():
            connection.close()
    return {
        "devices": len(recipients),
        "rounds": rounds,
        "send_ms_median": round(statistics.median(send_ms), 2),
        "delivery_p50_ms": round(_p(latencies, 0.50), 2),
        "delivery_p95_ms": round(_p(latencies, 0.95), 2),
        "delivery_max_ms": round(max(latencies), 2),
    }


WORKLOADS = [
    Workload(
        "to_device_fanout",
        "one sendToDevice to 200 devices; delivery latency to their waiting /sync calls",
        fan_out,
    ),
]
