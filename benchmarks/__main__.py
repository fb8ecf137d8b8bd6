"""Run the E2EE workloads against a homeserver.

    python -m benchmarks --url http://127.0.0.1:8008   # any running homeserver
    python -m benchmarks --backend sqlite              # starts its own mxkeys (or postgres)
    python -m benchmarks --quick                       # every workload at tiny size
    python -m benchmarks --backend postgres --workers 2  # mxkeys serve --workers 2
    python -m benchmarks --compare [--rounds 3] [--workers 2]  # side by side with Synapse

The server must allow registration with the m.login.dummy stage. --compare starts mxkeys on
SQLite, on PostgreSQL (and with --workers N on PostgreSQL) and Synapse (installed from PyPI
into benchmarks/.synapse-venv/ on first use), runs the workloads on each in turn, and writes
medians and ratios to benchmarks/results/compare-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import sys
import time
from collections.abc import Iterator

from benchmarks.common import Workload, git_commit, run_workloads
from benchmarks.servers import RunningServer, mxkeys_server
from benchmarks.workloads import all_workloads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="homeserver base URL (default: start mxkeys)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="database of the mxkeys started when --url is not given")
    parser.add_argument("--workers", type=int, default=1,
                        help="mxkeys serve --workers N (PostgreSQL only); with --compare, "
                        "N > 1 adds mxkeys on PostgreSQL with N workers to the servers")
    parser.add_argument("--compare", action="store_true",
                        help="mxkeys (SQLite, PostgreSQL) side by side with Synapse")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --compare: runs of every server (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--only", help="comma-separated workload names to run")
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    parser.add_argument("--list", action="store_true", help="list workloads and exit")
    parser.add_argument("--share-cpus", action="store_true",
                        help="let the to-device fan-out's client and server share every CPU "
                        "(by default they run on different ones: see servers.cpus_apart)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rounds < 1:
        parser.error("--workers and --rounds must be at least 1")
    if args.compare and args.url:
        parser.error("--compare starts its own servers; it takes no --url")
    if args.workers > 1 and not args.compare and (args.url or args.backend != "postgres"):
        parser.error("--workers N > 1 needs mxkeys on PostgreSQL: --backend postgres")
    return args


def select(workloads: list[Workload], only: str | None) -> list[Workload]:
    if not only:
        return workloads
    wanted = {name.strip() for name in only.split(",")}
    unknown = wanted - {w.name for w in workloads}
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return [w for w in workloads if w.name in wanted]


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[RunningServer]:
    if args.url:
        yield RunningServer("external", args.url.rstrip("/"), None)
    else:
        with mxkeys_server(args.backend, args.workers) as server:
            yield server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = select(all_workloads(), args.only)
    if args.list:
        for w in workloads:
            print(f"{w.name}: {w.description}")
        return 0
    if args.compare:
        from benchmarks.compare import compare

        return compare(workloads, args.rounds, args.quick, args.workers, git_commit(),
                       args.json_out, args.share_cpus)
    with target(args) as server:
        print(f"benchmarking {server.name} at {server.url}", flush=True)
        pid = server.process.pid if server.process and not args.share_cpus else None
        results = asyncio.run(run_workloads(server.url, workloads, args.quick, pid))
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
