"""Start a homeserver for a benchmark run: mxkeys on SQLite or PostgreSQL, in a subprocess
(Synapse, for `--compare`, is in `synapse.py`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
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


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (2nd field) may hold spaces; fields after its ")" are fixed.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (e.g. the worker processes of `mxkeys serve --workers`)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def threads_of(pid: int) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    return []


@contextlib.contextmanager
def cpus_apart(server_pid: int | None) -> Iterator[None]:
    """While the block runs, keep the server (every thread of its processes) on all CPUs but
    the last, and this benchmark client (every thread of it) on the last one; then give both
    back the CPUs they had. With no server process known (`--url`) or one CPU, nothing moves.

    Why: when a server answers many waiting connections of one local client in a row, each
    response wakes the client, and Linux places a task woken by a socket write on the
    writer's CPU (a "sync" wake-up: the writer is expected to sleep next). The server does
    not sleep, it writes the next response, so client and server take turns on one CPU while
    the other one idles, with stalls of milliseconds (`perf sched timehist` shows the two
    alternating on CPU 0 every 30-50 µs while CPU 1 is idle). Recipients on other machines
    cost a server nothing of the kind; this keeps the local client from standing in for
    them so badly."""
    cpus = sorted(os.sched_getaffinity(0))
    if server_pid is None or len(cpus) < 2:
        yield
        return
    server_tree = process_tree(server_pid)
    before = {pid: os.sched_getaffinity(pid) for pid in [*server_tree, os.getpid()]}

    def pin(pids: list[int], wanted: set[int]) -> None:
        for pid in pids:
            for tid in threads_of(pid):
                with contextlib.suppress(OSError):  # (a thread that has just ended)
                    os.sched_setaffinity(tid, wanted)

    try:
        pin(server_tree, set(cpus[:-1]))
        pin([os.getpid()], {cpus[-1]})
        yield
    finally:
        # Threads started meanwhile got their creator's CPUs: every thread gets back its
        # process's.
        for pid, mask in before.items():
            pin([pid], mask)


@dataclass
class RunningServer:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None

    def peak_rss_mib(self) -> float | None:
        """Peak resident memory of the server so far (Linux VmHWM): of its process, summed
        with its child processes' if it has any (`--workers N`: supervisor and workers)."""
        if self.process is None:
            return None
        peaks = [_vm_hwm_kib(pid) for pid in process_tree(self.process.pid)]
        known = [p for p in peaks if p is not None]
        return round(sum(known) / 1024, 1) if known else None


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


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def mxkeys_name(backend: str, workers: int = 1) -> str:
    return f"mxkeys-{backend}" + (f"-{workers}w" if workers > 1 else "")


@contextlib.contextmanager
def mxkeys_server(backend: str, workers: int = 1) -> Iterator[RunningServer]:
    """A fresh mxkeys (new database) with registration on, stopped afterwards. `workers` > 1
    runs `mxkeys serve --workers N` (PostgreSQL only)."""
    import psycopg

    if workers > 1 and backend != "postgres":
        raise ValueError("more than one worker needs the postgres backend")

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
    # Nothing from this shell's MXKEYS_* settings: mxkeys refuses names it does not know (such
    # as MXKEYS_BENCH_POSTGRES_URL), and a run should not depend on who starts it.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MXKEYS_")},
        "MXKEYS_DATABASE_URL": database_url,
        "MXKEYS_LISTEN": f"127.0.0.1:{port}",
        "MXKEYS_ENABLE_REGISTRATION": "true",
        "MXKEYS_LOG_LEVEL": os.environ.get("MXKEYS_LOG_LEVEL", "warning"),
        # Registration is setup, not measured: keep password hashing cheap.
        "MXKEYS_PASSWORD_TIME_COST": "1",
        "MXKEYS_PASSWORD_MEMORY_COST_KIB": "8192",
        "MXKEYS_PASSWORD_PARALLELISM": "1",
        # Benchmarks measure throughput, not the abuse limits (Synapse's run is unlimited too).
        **{
            f"MXKEYS_{name}_PER_MINUTE": "0"
            for name in ("REGISTER", "LOGIN", "KEYS_CLAIM", "SEND_TO_DEVICE", "ROOM_KEYS_UPLOAD")
        },
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mxkeys", "serve", "--workers", str(workers)], env=env,
        cwd=workdir, stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield RunningServer(mxkeys_name(backend, workers), url, process)
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
        if pg_name is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
