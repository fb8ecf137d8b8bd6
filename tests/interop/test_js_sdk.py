"""End-to-end encryption with matrix-js-sdk and its Rust crypto (Element Web's engine).

Runs `js_sdk_scenario.mjs` with Node against a fresh mxkeys: cross-signing, secret storage,
key backup, an encrypted room, a new device restoring the backup. The Node dependencies are
pinned in `package-lock.json`; the test installs them with `npm ci` when `node_modules` is
missing or differs from the lockfile (`.ci/run` installs them beforehand).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import InteropServer

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "js_sdk_scenario.mjs"
SCENARIO_TIMEOUT_S = 240
MIN_NODE = 20
# What step 9 of the scenario calls on purpose: optional endpoints mxkeys does not implement.
DELIBERATE = (
    "PUT /_matrix/client/v3/rooms/",  # .../typing/{userId}
    "POST /_matrix/client/v3/rooms/",  # .../receipt/m.read/{eventId}
    "GET /_matrix/client/v3/pushers",
    "GET /_matrix/client/v3/thirdparty/protocols",
    "GET /_matrix/client/v3/voip/turnServer",
)


def _installed_matches_lockfile() -> bool:
    """npm ci leaves `node_modules/.package-lock.json`: compare its packages to the lock."""
    hidden = HERE / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    wanted = json.loads((HERE / "package-lock.json").read_text())["packages"]
    installed = json.loads(hidden.read_text())["packages"]
    wanted_versions = {k: v.get("version") for k, v in wanted.items() if k}
    installed_versions = {k: v.get("version") for k, v in installed.items() if k}
    return wanted_versions == installed_versions


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` binary, with the scenario's dependencies installed from the lockfile."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the matrix-js-sdk interop test needs Node >= 20")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE:
        pytest.skip(f"node {version} is too old: the matrix-js-sdk interop test needs Node >= 20")
    if not _installed_matches_lockfile():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("tests/interop/node_modules is missing and npm is not installed")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.skip(
                "tests/interop/node_modules is missing and `npm ci` failed:\n"
                + result.stdout[-2000:]
                + result.stderr[-2000:]
            )
    return node


def test_js_sdk_rust_crypto_e2ee(node: str, interop_server: InteropServer) -> None:
    result = subprocess.run(
        [node, str(SCENARIO), interop_server.base_url],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"matrix-js-sdk scenario failed:\n{output[-12000:]}"
    assert "ALL CHECKS PASSED" in result.stdout, output[-12000:]
    access = interop_server.access
    assert not access.server_errors(), f"requests the server failed on: {access.server_errors()}"
    # Step 9 calls a few optional endpoints mxkeys does not have, on purpose; the SDK must
    # call no other.
    unexpected = [call for call in access.unmatched() if not call.startswith(DELIBERATE)]
    assert not unexpected, f"endpoints mxkeys lacks: {unexpected}"
    print(result.stdout)
    print("endpoints matrix-js-sdk called:\n  " + "\n  ".join(access.routes()))
    print("optional endpoints it was refused:\n  " + "\n  ".join(sorted(access.unmatched())))
