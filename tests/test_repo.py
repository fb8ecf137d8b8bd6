"""Repository hygiene that CI enforces: lint clean, README commands true."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "mxkeys", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_commands_match_ci() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:20] if line.strip().startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    install_and_serve, run_tests = commands
    assert install_and_serve.endswith(".venv/bin/mxkeys serve")
    ci = (ROOT / ".ci" / "run").read_text()
    assert run_tests in ci
