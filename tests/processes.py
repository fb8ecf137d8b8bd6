"""`mxkeys serve` as a real process of its own, for tests that need one (signals, several
processes on one database)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from benchmarks.servers import wait_until_up
from tests.conftest import RATE_LIMITED
from tests.helpers import free_port


def start_process(
    database_url: str, cwd: str, extra_env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """`mxkeys serve [args]` on a free port, once it answers; with its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXKEYS_")}
    env.update({
        "MXKEYS_DATABASE_URL": database_url,
        "MXKEYS_LISTEN": f"127.0.0.1:{port}",
        "MXKEYS_ENABLE_REGISTRATION": "true",
        "MXKEYS_LOG_LEVEL": "warning",
        "MXKEYS_PASSWORD_TIME_COST": "1",
        "MXKEYS_PASSWORD_MEMORY_COST_KIB": "1024",
        "MXKEYS_PASSWORD_PARALLELISM": "1",
        # Tests register and log in many users from one address: limits far above that.
        **{f"MXKEYS_{name.upper()}_PER_MINUTE": "6000000" for name in RATE_LIMITED},
        **{f"MXKEYS_{name.upper()}_BURST": "100000" for name in RATE_LIMITED},
        **(extra_env or {}),
    })
    process = subprocess.Popen(
        [sys.executable, "-m", "mxkeys", "serve", *args], env=env, cwd=cwd
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process, timeout=30)
    return process, url
