"""Start a homeserver for a benchmark run: mxkeys on SQLite or PostgreSQL, in a subprocess."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

PG_ADMIN_URL = os.environ.get(
    "MXKEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class RunningServer:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None

    def peak_rss_mib(self) -> float | None:
        """Peak resident memory of the server process so far (Linux VmHWM)."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_matrix/client/versions", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up in {timeout}s")


@contextlib.contextmanager
def mxkeys_server(backend: str) -> Iterator[RunningServer]:
    """A fresh mxkeys (new database) with registration on, stopped afterwards."""
    import psycopg

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mxkeys-bench-")
    pg_name = None
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir}/homeserver.db"
    else:
        pg_name = f"mxkeys_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        database_url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{pg_name}"
    env = {
        **os.environ,
        "MXKEYS_DATABASE_URL": database_url,
        "MXKEYS_LISTEN": f"127.0.0.1:{port}",
        "MXKEYS_ENABLE_REGISTRATION": "true",
        "MXKEYS_LOG_LEVEL": os.environ.get("MXKEYS_LOG_LEVEL", "warning"),
        # Registration is setup, not measured: keep password hashing cheap.
        "MXKEYS_PASSWORD_TIME_COST": "1",
        "MXKEYS_PASSWORD_MEMORY_COST_KIB": "8192",
        "MXKEYS_PASSWORD_PARALLELISM": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mxkeys", "serve"], env=env, cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield RunningServer(f"mxkeys-{backend}", url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        if pg_name is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
