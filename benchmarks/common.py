"""What every workload shares: an HTTP client that checks each response, and figures.

A workload is an async function taking a `BenchContext` and returning a flat dict of figures
(e.g. `{"sessions_per_s": 61234.0, "p50_ms": 3.1}`). Setup (registration, logins, key
generation) happens in the workload before it starts its timer and is not counted. Every
response is checked: a non-2xx status or a wrong body raises `BenchError`, which fails the
workload instead of timing it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.http1 import Http1Connection, RawResponse

CLIENT = "/_matrix/client/v3"


class BenchError(Exception):
    """A response that was not what the workload expected."""


@dataclass(frozen=True)
class BenchUser:
    user_id: str
    access_token: str
    device_id: str


def authorization(user: BenchUser) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"}


class BenchClient:
    def __init__(self, base_url: str, concurrency: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=120, limits=limits)
        self.run_id = secrets.token_hex(4)
        self._bare: Http1Connection | None = None

    async def close(self) -> None:
        await self.http.aclose()
        if self._bare is not None:
            self._bare.close()

    async def timed(
        self,
        method: str,
        path: str,
        user: BenchUser,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> RawResponse:
        """One request to `/_matrix/client/v3/<path>` on a bare HTTP/1.1 keep-alive connection
        (`benchmarks/http1.py`): what timed requests use. httpx costs 1.5-4 ms of client CPU a
        request, on the same two cores as the server; this costs next to nothing, so the
        figures measure the server. One request at a time."""
        if self._bare is None:
            self._bare = Http1Connection(self.base_url)
        return await self._bare.request(
            method, f"{CLIENT}/{path}", authorization(user), params, content=content
        )

    async def call(
        self,
        method: str,
        path: str,
        user: BenchUser | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        expect: int = 200,
    ) -> Any:
        """Send a request to `/_matrix/client/v3/<path>` and return the decoded JSON body."""
        response = await self.raw(method, path, user, json=json, params=params)
        if response.status_code != expect:
            raise BenchError(
                f"{method} {path}: expected {expect}, got {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            return response.json()
        except ValueError as e:
            raise BenchError(f"{method} {path}: body is not JSON") from e

    async def raw(
        self,
        method: str,
        path: str,
        user: BenchUser | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        url = path if path.startswith("/") else f"{CLIENT}/{path}"
        headers = {"Authorization": f"Bearer {user.access_token}"} if user else {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        return await self.http.request(
            method, url, json=json, params=params, headers=headers, content=content
        )

    async def register(self, prefix: str = "bench") -> BenchUser:
        """Register a fresh user through the dummy-auth flow (setup, not timed)."""
        username = f"{prefix}_{self.run_id}_{secrets.token_hex(4)}"
        body: dict[str, Any] = {"username": username, "password": "bench-password-1"}
        first = await self.raw("POST", "register", json=body)
        if first.status_code != 401:
            raise BenchError(f"register: expected 401, got {first.status_code}: {first.text}")
        body["auth"] = {"type": "m.login.dummy", "session": first.json()["session"]}
        data = await self.call("POST", "register", json=body)
        return BenchUser(data["user_id"], data["access_token"], data["device_id"])

    async def register_many(self, count: int, prefix: str = "bench") -> list[BenchUser]:
        semaphore = asyncio.Semaphore(16)

        async def one() -> BenchUser:
            async with semaphore:
                return await self.register(prefix)

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def login(self, user: BenchUser, password: str = "bench-password-1") -> BenchUser:
        """Another device of the same user (setup, not timed)."""
        data = await self.call(
            "POST",
            "login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user.user_id},
                "password": password,
            },
        )
        return BenchUser(data["user_id"], data["access_token"], data["device_id"])


def percentiles(latencies_s: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p90/p99/max of request latencies, in milliseconds."""
    if not latencies_s:
        return {}
    ordered = sorted(latencies_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        f"{prefix}p50_ms": round(statistics.median(ordered) * 1000, 2),
        f"{prefix}p90_ms": round(at(0.90), 2),
        f"{prefix}p99_ms": round(at(0.99), 2),
        f"{prefix}max_ms": round(ordered[-1] * 1000, 2),
    }


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


async def timed(awaitable: Awaitable[Any], latencies: list[float]) -> Any:
    """Await one request, appending its latency (seconds) to `latencies`."""
    start = time.perf_counter()
    result = await awaitable
    latencies.append(time.perf_counter() - start)
    return result


@dataclass
class BenchContext:
    client: BenchClient
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # The server's process, when the run started it (see `servers.cpus_apart`).
    server_pid: int | None = None

    def scale(self, full: int, quick: int) -> int:
        """The workload size: `full` normally, `quick` in --quick mode."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    run: Callable[[BenchContext], Awaitable[dict[str, Any]]]


async def run_workloads(
    url: str, workloads: list[Workload], quick: bool, server_pid: int | None = None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for workload in workloads:
        client = BenchClient(url)
        try:
            started = time.perf_counter()
            figures = await workload.run(BenchContext(client, quick=quick, server_pid=server_pid))
            results[workload.name] = {"ok": True, **figures}
            print(f"  {workload.name}: {figures} ({time.perf_counter() - started:.1f}s)",
                  flush=True)
        except Exception as e:  # a failed workload is reported, and fails the run
            traceback.print_exc()
            results[workload.name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            print(f"  {workload.name}: FAILED {e}", flush=True)
        finally:
            await client.close()
    return results


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
