"""Workload modules; each exports `WORKLOADS: list[Workload]`."""

from __future__ import annotations

import importlib
import pkgutil

from benchmarks.common import Workload


def all_workloads() -> list[Workload]:
    found: list[Workload] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "WORKLOADS", []))
    return found
