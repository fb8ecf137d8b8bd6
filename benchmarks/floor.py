"""What the HTTP server alone allows for a to-device fan-out, with no homeserver behind it.

    python -m benchmarks.floor                    # uvicorn, as `mxkeys serve` runs it
    python -m benchmarks.floor --server granian   # needs `pip install granian` first

A bare ASGI app keeps every `GET` waiting until a `PUT` arrives, then answers all of them
with the same small JSON body: no database, no authentication, no routing. The client is the
one the `to_device_fanout` workload uses (one keep-alive connection per waiting device, each
response timed when its last byte arrives), with the same number of devices, so the figures
are the floor under that workload's: what the server and the client cost by themselves on
this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.http1 import Http1Connection
from benchmarks.servers import cpus_apart, free_port, stop_process, wait_until_up

_BODY = (
    b'{"next_batch":"s1_1_1_1","to_device":{"events":[{"sender":"@sender:localhost",'
    b'"type":"m.bench.fanout","content":{"marker":"0000","round":0}}]}}'
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))]
_waiting: list[asyncio.Future[None]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /wait waits for the next PUT; PUT releases every waiting GET; any other GET is
    answered at once (a probe)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b"{}"
    if scope["method"] == "GET" and scope["path"] == "/wait":
        future = asyncio.get_running_loop().create_future()
        _waiting.append(future)
        await future
        body = _BODY
    elif scope["method"] == "PUT":
        waiting = list(_waiting)
        _waiting.clear()
        for future in waiting:
            future.set_result(None)
    headers = _HEADERS if body is _BODY else [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _command(server: str, port: int) -> list[str]:
    if server == "uvicorn":  # the options `mxkeys serve` uses
        return [sys.executable, "-m", "uvicorn", "benchmarks.floor:app", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--port", str(port),
            "--loop", "uvloop", "--http", "1", "--log-level", "warning", "benchmarks.floor:app"]


async def fan_out(url: str, devices: int, rounds: int, settle_s: float) -> dict[str, float]:
    connections = [Http1Connection(url) for _ in range(devices)]
    sender = Http1Connection(url)
    latencies: list[float] = []
    try:
        await sender.request("PUT", "/release")  # opens the sender's connection
        for _ in range(rounds):
            waiters = [asyncio.create_task(c.request("GET", "/wait")) for c in connections]
            await asyncio.sleep(settle_s)  # every GET reaches the server and waits
            sent_at = time.perf_counter()
            await sender.request("PUT", "/release")
            for response in await asyncio.gather(*waiters):
                if response.status != 200 or response.json()["next_batch"] != "s1_1_1_1":
                    raise RuntimeError(f"unexpected answer: {response.status} {response.body!r}")
                latencies.append((response.received_at - sent_at) * 1000)
    finally:
        for connection in [*connections, sender]:
            connection.close()
    ordered = sorted(latencies)
    return {
        "devices": devices,
        "rounds": rounds,
        "delivery_p50_ms": round(statistics.median(ordered), 2),
        "delivery_p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds the GETs are given to reach the server before the PUT")
    parser.add_argument("--share-cpus", action="store_true",
                        help="let client and server share every CPU (as the workload's option)")
    args = parser.parse_args(argv)
    port = free_port()
    process = subprocess.Popen(_command(args.server, port), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)  # (the app answers any GET but /wait at once)
        with cpus_apart(None if args.share_cpus else process.pid):
            figures = asyncio.run(fan_out(url, args.devices, args.rounds, args.settle))
    finally:
        stop_process(process)
    print(f"{args.server}: {figures}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
