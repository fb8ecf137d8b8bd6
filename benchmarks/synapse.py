"""Synapse, the reference homeserver, for side-by-side runs (`python -m benchmarks --compare`).

Synapse is installed from PyPI, at a pinned version, into its own virtualenv
(`benchmarks/.synapse-venv/`, git-ignored) on first use; it is never a dependency of mxkeys.
Each run gets a fresh data directory with a config written here: SQLite database, server
name `localhost`, one client listener on a free loopback port, registration open without
verification, every `rc_*` rate limit raised so it never throttles the benchmark.

Settings that would make Synapse do work mxkeys does not, or that only make setup slow, are
turned down, as mxkeys' are in `servers.py`: password hashing is cheap (`bcrypt_rounds: 4`;
registration is setup, not measured), presence is off (mxkeys has none), logging is at WARNING.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.servers import RunningServer, free_port, stop_process, wait_until_up

SYNAPSE_VERSION = "1.163.2"  # newest on PyPI that installs on Python 3.11 when this was written
VENV = Path(__file__).resolve().parent / ".synapse-venv"

# A per-second rate and a burst no benchmark comes near.
UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}


def venv_python() -> Path:
    return VENV / "bin" / "python"


def clean_env() -> dict[str, str]:
    """This process's environment without what points Python at the mxkeys virtualenv."""
    return {
        k: v for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }


def installed_version() -> str | None:
    python = venv_python()
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c",
         "import importlib.metadata as m; print(m.version('matrix-synapse'))"],
        capture_output=True, text=True, env=clean_env(),
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_synapse(version: str = SYNAPSE_VERSION) -> Path:
    """The virtualenv's Python, with `matrix-synapse==version` installed (done on first use)."""
    current = installed_version()
    if current == version:
        return venv_python()
    print(f"installing matrix-synapse=={version} into {VENV} (once) ...", flush=True)
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, env=clean_env())
    pip = subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"matrix-synapse=={version}"],
        capture_output=True, text=True, env=clean_env(),
    )
    if pip.returncode != 0 or installed_version() != version:
        raise RuntimeError(
            f"matrix-synapse {version} did not install into {VENV}:\n{pip.stdout}{pip.stderr}"
        )
    return venv_python()


def rate_limits() -> dict[str, Any]:
    """Every `rc_*` setting Synapse reads, raised out of reach."""
    return {
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_registration_token_validity": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_admin_redaction": UNLIMITED,
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_key_requests": UNLIMITED,
        "rc_3pid_validation": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
        "rc_third_party_invite": UNLIMITED,
        "rc_media_create": UNLIMITED,
        "rc_presence": {"per_user": UNLIMITED},
        "rc_delayed_event_mgmt": UNLIMITED,
        "rc_room_creation": UNLIMITED,
        "rc_reports": UNLIMITED,
        "rc_user_directory": UNLIMITED,
        "rc_profile": UNLIMITED,
        "rc_federation": {
            "window_size": 1000, "sleep_limit": 1_000_000, "sleep_delay": 0,
            "reject_limit": 1_000_000, "concurrent": 1_000_000,
        },
    }


def write_config(workdir: Path, port: int) -> Path:
    """homeserver.yaml (and its log config and signing key) for one run, in `workdir`."""
    log_config = workdir / "log.yaml"
    log_config.write_text(yaml.safe_dump({
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"level": "WARNING", "handlers": ["console"]},
        "disable_existing_loggers": False,
    }))
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    signing_key = workdir / "signing.key"
    signing_key.write_text(f"ed25519 a_bench {seed}\n")
    config = {
        "server_name": "localhost",
        "pid_file": str(workdir / "homeserver.pid"),
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(log_config),
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(signing_key),
        "report_stats": False,
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        **rate_limits(),
    }
    path = workdir / "homeserver.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def synapse_server(version: str = SYNAPSE_VERSION) -> Iterator[RunningServer]:
    """A fresh Synapse (new data directory, SQLite), stopped and removed afterwards.

    Its output goes to `synapse.log` in the data directory, which is kept (and named) when
    the server fails to start."""
    python = ensure_synapse(version)
    workdir = Path(tempfile.mkdtemp(prefix="synapse-bench-"))
    port = free_port()
    config = write_config(workdir, port)
    log_path = workdir / "synapse.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
        )
    url = f"http://127.0.0.1:{port}"
    ok = False
    try:
        try:
            wait_until_up(url, process, timeout=180)
        except RuntimeError as e:
            raise RuntimeError(f"Synapse: {e}; see {log_path}") from e
        yield RunningServer("synapse", url, process, log_path=log_path)
        ok = True
    finally:
        stop_process(process)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
