"""Run the E2EE workloads against a homeserver.

    python -m benchmarks --url http://127.0.0.1:8008   # any running homeserver
    python -m benchmarks --backend sqlite              # starts its own mxkeys (or postgres)
    python -m benchmarks --quick                       # every workload at tiny size

The server must allow registration with the m.login.dummy stage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from benchmarks.common import BenchClient, BenchContext, Workload
from benchmarks.servers import RunningServer, mxkeys_server
from benchmarks.workloads import all_workloads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="homeserver base URL (default: start mxkeys)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="database of the mxkeys started when --url is not given")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--only", help="comma-separated workload names to run")
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list workloads and exit")
    return parser.parse_args(argv)


def select(workloads: list[Workload], only: str | None) -> list[Workload]:
    if not only:
        return workloads
    wanted = {name.strip() for name in only.split(",")}
    unknown = wanted - {w.name for w in workloads}
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return [w for w in workloads if w.name in wanted]


async def run_workloads(url: str, workloads: list[Workload], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for workload in workloads:
        client = BenchClient(url)
        try:
            started = time.perf_counter()
            figures = await workload.run(BenchContext(client, quick=quick))
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


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[RunningServer]:
    if args.url:
        yield RunningServer("external", args.url.rstrip("/"), None)
    else:
        with mxkeys_server(args.backend) as server:
            yield server


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = select(all_workloads(), args.only)
    if args.list:
        for w in workloads:
            print(f"{w.name}: {w.description}")
        return 0
    with target(args) as server:
        print(f"benchmarking {server.name} at {server.url}", flush=True)
        results = asyncio.run(run_workloads(server.url, workloads, args.quick))
        peak = server.peak_rss_mib()
    report = {
        "server": server.name,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
        "peak_rss_mib": peak,
        "results": results,
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    failed = [name for name, r in results.items() if not r["ok"]]
    if failed:
        print(f"FAILED workloads: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
