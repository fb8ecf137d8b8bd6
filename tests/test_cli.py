"""The `mxkeys` command, run as a user would: in a subprocess."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import free_port

FAST_HASH = {
    "MXKEYS_PASSWORD_TIME_COST": "1",
    "MXKEYS_PASSWORD_MEMORY_COST_KIB": "1024",
    "MXKEYS_PASSWORD_PARALLELISM": "1",
}


def mxkeys(*args: str, cwd: Path, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MXKEYS_")}
    full_env.update(FAST_HASH)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mxkeys", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_help_documents_settings(tmp_path: Path) -> None:
    out = mxkeys("serve", "--help", cwd=tmp_path).stdout
    for flag in ("--server-name", "--listen", "--database-url", "--enable-registration",
                 "--log-level", "--config", "MXKEYS_SERVER_NAME"):
        assert flag in out
    top = mxkeys("--help", cwd=tmp_path).stdout
    assert "serve" in top and "register-user" in top


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    result = mxkeys("serve", "--listen", "nowhere", cwd=tmp_path)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_serve_default_sqlite_and_register_user(tmp_path: Path) -> None:
    result = mxkeys("register-user", "root", "--password", "s3cret", "--admin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "@root:localhost" in result.stdout
    assert (tmp_path / "mxkeys-data" / "homeserver.db").exists()
    again = mxkeys("register-user", "root", "--password", "x", cwd=tmp_path)
    assert again.returncode == 1 and "M_USER_IN_USE" in again.stderr

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXKEYS_")}
    env.update(FAST_HASH)
    process = subprocess.Popen(
        [sys.executable, "-m", "mxkeys", "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/_matrix/client/versions").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        login = httpx.post(f"{base}/_matrix/client/v3/login", json={
            "type": "m.login.password", "user": "root", "password": "s3cret"})
        assert login.status_code == 200, login.text
        register = httpx.post(f"{base}/_matrix/client/v3/register", json={"username": "x"})
        assert register.status_code == 403  # registration is off by default
    finally:
        process.terminate()
        process.wait(timeout=30)
