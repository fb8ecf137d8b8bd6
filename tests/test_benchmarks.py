"""The benchmark suite keeps working: `python -m benchmarks --quick` against a fresh mxkeys
(SQLite, PostgreSQL, PostgreSQL with two workers) passes every workload; the --compare
summary and table get directions, ratios and failures right. Synapse is never installed or
started here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.common import Workload
from benchmarks.compare import TIMES, direction, markdown, schedule, speedup, summarise
from benchmarks.servers import cpus_apart, threads_of
from benchmarks.workloads import all_workloads
from tests.conftest import PG_ADMIN_URL, selected_backends

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("db", "workers"), [("sqlite", 1), ("postgres", 1), ("postgres", 2)],
    ids=["sqlite", "postgres", "postgres-2-workers"],
)
def test_quick_benchmark_passes(request, tmp_path, db, workers):
    if db not in selected_backends(request.config):
        pytest.skip(f"{db} backend not selected")
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXKEYS_")}
    env["MXKEYS_BENCH_POSTGRES_URL"] = PG_ADMIN_URL
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--backend", db,
         "--workers", str(workers), "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(out.read_text())
    expected = {w.name for w in all_workloads()}
    assert set(report["results"]) == expected
    failed = {name: r for name, r in report["results"].items() if not r["ok"]}
    assert not failed, failed
    assert report["server"] == ("mxkeys-postgres-2w" if workers == 2 else f"mxkeys-{db}")
    assert report["peak_rss_mib"] > 0


def test_directions():
    assert direction("sessions_per_s") == "higher"
    assert direction("p50_ms") == "lower"
    assert direction("delivery_p95_ms") == "lower"
    assert direction("total_s") == "lower"
    assert direction("send_ms_median") == "lower"
    assert direction("sessions") is None
    # Above 1 always means mxkeys is faster, whichever way the figure goes.
    assert speedup(200.0, 100.0, "higher") == 2.0
    assert speedup(5.0, 10.0, "lower") == 2.0
    assert speedup(20.0, 10.0, "lower") == 0.5
    assert speedup(None, 10.0, "lower") is None


def test_schedule_alternates():
    names = [c for c in schedule(["a", "b"], "s", 2)]  # type: ignore[list-item]
    assert names == ["a", "s", "b", "s", "a", "s", "b", "s"]


def test_summary_and_table_record_failures():
    async def nothing(ctx):
        return {}

    workloads = [Workload("w", "a workload", nothing)]
    ok = {"ok": True, "sessions": 10, "sessions_per_s": 100.0, "p50_ms": 4.0}
    runs = [
        {"server": "mxkeys-sqlite", "peak_rss_mib": 50.0, "results": {"w": ok}},
        {"server": "synapse", "peak_rss_mib": 200.0,
         "results": {"w": {"ok": False, "error": "BenchError: 500"}}},
        {"server": "mxkeys-sqlite", "peak_rss_mib": 60.0,
         "results": {"w": {**ok, "sessions_per_s": 300.0, "p50_ms": 2.0}}},
        {"server": "synapse", "peak_rss_mib": 220.0,
         "results": {"w": {**ok, "sessions_per_s": 50.0, "p50_ms": 12.0}}},
    ]
    summary = summarise(runs, workloads)
    mine = summary["mxkeys-sqlite"]["workloads"]["w"]
    assert mine["median"] == {"sessions_per_s": 200.0, "p50_ms": 3.0}
    assert mine["sizes"] == {"sessions": 10}
    theirs = summary["synapse"]["workloads"]["w"]
    assert (theirs["passed"], theirs["failures"]) == (1, ["BenchError: 500"])
    assert summary["synapse"]["peak_rss_mib"] == {"median": 210.0, "max": 220.0}
    report = {
        "date": "2026-01-01", "commit": "abc", "rounds": 2, "quick": True, "machine": "m",
        "load_average_start": [1.0], "load_average_end": [1.0],
        "servers": {"mxkeys-sqlite": "mxkeys SQLite", "synapse": "Synapse"},
        "summary": summary,
    }
    table = markdown(report, workloads).replace(TIMES, "x")
    failed = "(1 of 2 runs failed)"
    assert f"| w (sessions 10) | sessions_per_s ↑ | 200 | 50.0 {failed} | 4.00x |" in table
    assert f"|  | p50_ms ↓ | 3.00 | 12.0 {failed} | 4.00x |" in table
    assert "- w on Synapse: BenchError: 500" in table
    assert "| server process | peak RSS MiB ↓ | 55.0 | 210 | 3.82x |" in table


def test_http_floor_runs():
    """`python -m benchmarks.floor` (the bare-server fan-out under the to-device workload)
    keeps working, at a tiny size."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.floor", "--devices", "5", "--rounds", "2",
         "--settle", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "uvicorn: {'devices': 5, 'rounds': 2, 'delivery_p50_ms':" in result.stdout


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_cpus_apart_separates_server_and_client_then_restores_both():
    cpus = sorted(os.sched_getaffinity(0))
    # A stand-in server with a second thread, and a thread of our own.
    server = subprocess.Popen([sys.executable, "-c", (
        "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
        "print('up', flush=True); time.sleep(30)"
    )], stdout=subprocess.PIPE, text=True)
    ours = threading.Thread(target=time.sleep, args=(2,))
    ours.start()
    try:
        assert server.stdout is not None and server.stdout.readline() == "up\n"

        def masks(pid):
            return {tid: os.sched_getaffinity(tid) for tid in threads_of(pid)}

        server_before, ours_before = masks(server.pid), masks(os.getpid())
        assert len(server_before) == 2 and len(ours_before) >= 2
        with cpus_apart(server.pid):
            assert all(m == set(cpus[:-1]) for m in masks(server.pid).values())
            assert all(m == {cpus[-1]} for m in masks(os.getpid()).values())
        assert masks(server.pid) == server_before
        assert masks(os.getpid()) == ours_before
        with cpus_apart(None):  # a server started elsewhere (--url): nothing moves
            assert masks(os.getpid()) == ours_before
    finally:
        server.kill()
        server.wait()
        ours.join()
