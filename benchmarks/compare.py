"""Side by side: mxkeys on SQLite, on PostgreSQL (and with N workers) against Synapse.

`python -m benchmarks --compare [--rounds N] [--quick] [--workers N]` runs every workload on
each server in turn, alternating mxkeys and Synapse within a round (mxkeys-sqlite, synapse,
mxkeys-postgres, synapse, ...) so that a machine getting busier or quieter over time touches
both alike. Each run starts a fresh server (new database) and stops it afterwards; its peak
resident memory (VmHWM, summed over a multi-process server's processes) is read at the end.

For each figure the median over a server's runs is shown, with how many times faster mxkeys
is than Synapse: throughput (`*_per_s`) is better higher, latencies and durations (`*_ms`,
`*_s`) are better lower, and the ratio is oriented so that above 1 always means mxkeys is
faster. A workload that fails on a server is recorded as a failure in the table, never
dropped: a median is only taken over the runs that passed, and the table says how many
failed and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Workload, run_workloads
from benchmarks.servers import RunningServer, mxkeys_name, mxkeys_server
from benchmarks.synapse import SYNAPSE_VERSION, ensure_synapse, synapse_server

RESULTS = Path(__file__).resolve().parent / "results"
SYNAPSE = "synapse"
TIMES = "\u00d7"  # multiplication sign
NONE = "-"


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    start: Callable[[], contextlib.AbstractContextManager[RunningServer]]


def contenders(workers: int) -> list[Contender]:
    """The mxkeys servers, in the order a round runs them."""
    found = [
        Contender("mxkeys-sqlite", "mxkeys SQLite", lambda: mxkeys_server("sqlite")),
        Contender("mxkeys-postgres", "mxkeys PostgreSQL", lambda: mxkeys_server("postgres")),
    ]
    if workers > 1:
        found.append(Contender(
            mxkeys_name("postgres", workers), f"mxkeys PostgreSQL, {workers} workers",
            lambda: mxkeys_server("postgres", workers),
        ))
    return found


def synapse_contender() -> Contender:
    return Contender(SYNAPSE, f"Synapse {SYNAPSE_VERSION} SQLite", synapse_server)


def schedule(mxkeys: list[Contender], synapse: Contender, rounds: int) -> list[Contender]:
    """mxkeys and Synapse alternately: every mxkeys run is followed by a Synapse run."""
    return [c for _ in range(rounds) for m in mxkeys for c in (m, synapse)]


# -- figures ------------------------------------------------------------------------------------


def direction(figure: str) -> str | None:
    """"higher" or "lower" is better; None for a size (sessions, devices, ...), not timed."""
    if figure.endswith("_per_s"):
        return "higher"
    if figure.endswith(("_ms", "_s")) or "_ms_" in figure:  # e.g. send_ms_median
        return "lower"
    return None


def headline(figure: str) -> bool:
    """Figures shown in the table (the JSON has them all)."""
    return direction(figure) is not None and not (
        figure == "total_s" or figure.endswith(("p90_ms", "max_ms"))
    )


def speedup(mxkeys: float | None, synapse: float | None, better: str) -> float | None:
    """How many times faster mxkeys is (above 1: faster, below 1: slower)."""
    if mxkeys is None or synapse is None or mxkeys <= 0 or synapse <= 0:
        return None
    return mxkeys / synapse if better == "higher" else synapse / mxkeys


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarise(runs: list[dict[str, Any]], workloads: list[Workload]) -> dict[str, Any]:
    """Per server: per workload the median of each figure over the runs that passed, the
    sizes, and the failures; and the peak memory."""
    summary: dict[str, Any] = {}
    for server in dict.fromkeys(r["server"] for r in runs):
        mine = [r for r in runs if r["server"] == server]
        peaks = [r["peak_rss_mib"] for r in mine if r.get("peak_rss_mib") is not None]
        per_workload: dict[str, Any] = {}
        for w in workloads:
            results = [r["results"].get(w.name) for r in mine]
            passed = [x for x in results if x and x["ok"]]
            failures = [x["error"] for x in results if x and not x["ok"]]
            figures = {}
            sizes = {}
            for key in dict.fromkeys(k for x in passed for k in x if k != "ok"):
                values = [x[key] for x in passed if isinstance(x.get(key), int | float)]
                if direction(key) is None:
                    sizes[key] = values[0] if values else None
                else:
                    figures[key] = median(values)
            per_workload[w.name] = {
                "runs": len(results), "passed": len(passed), "failures": failures,
                "sizes": sizes, "median": figures,
            }
        summary[server] = {
            "runs": len(mine),
            "peak_rss_mib": {"median": median(peaks), "max": max(peaks) if peaks else None},
            "workloads": per_workload,
        }
    return summary


# -- the run ------------------------------------------------------------------------------------


def run_one(
    contender: Contender, workloads: list[Workload], quick: bool, label: str,
    share_cpus: bool = False,
) -> dict[str, Any]:
    record: dict[str, Any] = {"server": contender.name}
    started = time.perf_counter()
    try:
        with contender.start() as server:
            print(f"[{label}] {contender.name} at {server.url}", flush=True)
            pid = server.process.pid if server.process and not share_cpus else None
            record["results"] = asyncio.run(run_workloads(server.url, workloads, quick, pid))
            record["peak_rss_mib"] = server.peak_rss_mib()
            if server.log_path is not None and any(
                not r["ok"] for r in record["results"].values()
            ):
                RESULTS.mkdir(exist_ok=True)
                kept = RESULTS / f"{contender.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
                shutil.copy(server.log_path, kept)
                record["server_log"] = str(kept)
                print(f"  server log kept: {kept}", flush=True)
    except Exception as e:  # a server that does not start fails every workload of the run
        print(f"[{label}] {contender.name}: FAILED to run: {e}", flush=True)
        error = f"server failed: {type(e).__name__}: {e}"
        record["results"] = {
            w.name: record.get("results", {}).get(w.name, {"ok": False, "error": error})
            for w in workloads
        }
        record.setdefault("peak_rss_mib", None)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def postgres_version() -> str | None:
    with contextlib.suppress(Exception):
        import psycopg

        from benchmarks.servers import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    return None


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib()} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"PostgreSQL {postgres_version()}"
    )


@contextlib.contextmanager
def load_average(meta: dict[str, Any]) -> Iterator[None]:
    meta["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        yield
    finally:
        meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]


def compare(
    workloads: list[Workload], rounds: int, quick: bool, workers: int, commit: str,
    json_out: str | None = None, share_cpus: bool = False,
) -> int:
    ensure_synapse()  # installs on first use, before anything is timed
    mxkeys = contenders(workers)
    synapse = synapse_contender()
    order = schedule(mxkeys, synapse, rounds)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "machine": machine(),
        "quick": quick,
        "rounds": rounds,
        "synapse_version": SYNAPSE_VERSION,
        "servers": {c.name: c.label for c in [*mxkeys, synapse]},
        "order": [c.name for c in order],
        "to_device_cpus": "shared" if share_cpus else "apart",
    }
    runs = []
    with load_average(meta):
        for i, contender in enumerate(order):
            label = f"run {i + 1}/{len(order)}, round {i // (2 * len(mxkeys)) + 1}"
            runs.append(run_one(contender, workloads, quick, label, share_cpus))
    summary = summarise(runs, workloads)
    report = {**meta, "summary": summary, "runs": runs}
    table = markdown(report, workloads)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"compare-{meta['date']}{'-quick' if quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table)
    print()
    print(table)
    print(f"written: {stem}.json, {stem}.md")
    failed_mxkeys = [
        f"{server}/{name}" for server, s in summary.items() if server != SYNAPSE
        for name, w in s["workloads"].items() if w["failures"]
    ]
    failed_synapse = [n for n, w in summary[SYNAPSE]["workloads"].items() if w["failures"]]
    if failed_synapse:
        print(f"failed on Synapse (recorded in the table): {', '.join(failed_synapse)}",
              file=sys.stderr)
    if failed_mxkeys:
        print(f"FAILED on mxkeys: {', '.join(failed_mxkeys)}", file=sys.stderr)
        return 1
    return 0


# -- the table ----------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return NONE
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:.1f}{TIMES}" if value >= 10 else f"{value:.2f}{TIMES}"


def passed_median(workload: dict[str, Any], figure: str) -> float | None:
    return workload["median"].get(figure) if workload["passed"] else None


def markdown(report: dict[str, Any], workloads: list[Workload]) -> str:
    summary = report["summary"]
    labels = report["servers"]
    mx = [name for name in labels if name != SYNAPSE]
    servers = [*mx, SYNAPSE]
    header = ["Workload", "Figure", *(labels[s] for s in servers),
              *(f"{labels[m]} vs Synapse" for m in mx)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    notes: list[str] = []

    def cell(server: str, workload: str, figure: str) -> str:
        w = summary[server]["workloads"][workload]
        if w["passed"] == 0:
            return "**failed**"
        text = fmt(w["median"].get(figure))
        if w["failures"]:
            text += f" ({len(w['failures'])} of {w['runs']} runs failed)"
        return text

    for w in workloads:
        per_server = {s: summary[s]["workloads"][w.name] for s in servers}
        for s in servers:
            for error in dict.fromkeys(per_server[s]["failures"]):
                notes.append(f"- {w.name} on {labels[s]}: {error}")
        figures = list(dict.fromkeys(
            f for s in servers for f in per_server[s]["median"] if headline(f)
        ))
        sizes = next((per_server[s]["sizes"] for s in servers if per_server[s]["sizes"]), {})
        name = w.name + (
            " (" + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ")" if sizes else ""
        )
        if not figures:
            figures = [NONE]
        for i, figure in enumerate(figures):
            better = direction(figure) or "lower"
            arrow = " ↑" if better == "higher" else " ↓"
            row = [name if i == 0 else "", figure + (arrow if figure != NONE else "")]
            row += [cell(s, w.name, figure) for s in servers]
            syn = passed_median(per_server[SYNAPSE], figure)
            for m in mx:
                row.append(fmt_ratio(speedup(passed_median(per_server[m], figure), syn, better)))
            lines.append("| " + " | ".join(row) + " |")
    rss = {s: summary[s]["peak_rss_mib"]["median"] for s in servers}
    row = ["server process", "peak RSS MiB ↓", *(fmt(rss[s]) for s in servers)]
    row += [fmt_ratio(speedup(rss[m], rss[SYNAPSE], "lower")) for m in mx]
    lines.append("| " + " | ".join(row) + " |")
    intro = [
        f"{report['date']}, commit {report['commit']}, {report['rounds']} round(s)"
        f"{', quick sizes' if report['quick'] else ''}; {report['machine']}; "
        f"load average {report['load_average_start'][0]} at start, "
        f"{report['load_average_end'][0]} at end.",
        "",
        "Medians over the runs; ↑ higher is better, ↓ lower is better. \"vs Synapse\" is how many "
        "times faster mxkeys is (above 1: faster; for memory: how many times less).",
        "",
    ]
    out = intro + lines
    if notes:
        out += ["", "Failures:", "", *notes]
    return "\n".join(out) + "\n"
