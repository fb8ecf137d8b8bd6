"""Test fixtures: real servers over real HTTP, on SQLite and on PostgreSQL.

Every test that takes `server` (or `db`) runs once per backend. Each test run makes its own
fresh PostgreSQL database and drops it at the end; `--backend sqlite` or `--backend postgres`
limits a run to one. PostgreSQL is found at MXKEYS_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres); if it is not reachable the tests fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxkeys.config import Config
from mxkeys.homeserver import HomeServer
from mxkeys.storage.database import Database
from mxkeys.storage.migrate import upgrade
from tests.helpers import Api, ServerHandle

BACKENDS = ("sqlite", "postgres")
PG_ADMIN_URL = os.environ.get(
    "MXKEYS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("all", *BACKENDS),
        default="all",
        help="storage backend(s) to run storage and API tests on",
    )
    parser.addoption(
        "--run-slow", action="store_true", help="also run long fuzzing/soak tests"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long-running: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def selected_backends(config: pytest.Config) -> list[str]:
    choice = config.getoption("--backend")
    return list(BACKENDS) if choice == "all" else [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "backend", selected_backends(metafunc.config), scope="session"
        )


class PostgresDatabases:
    """Creates fresh databases for this test run and drops them afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def _admin(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.admin_url, autocommit=True)
        except psycopg.OperationalError as e:
            pytest.fail(
                f"PostgreSQL is not reachable at {self.admin_url} ({e}); start it, or run "
                "with --backend sqlite"
            )

    def create(self) -> str:
        name = f"mxkeys_test_{secrets.token_hex(6)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(PG_ADMIN_URL)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def new_database_url(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
):
    """A function making the URL of a fresh, empty database on a backend."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            path: Path = tmp_path_factory.mktemp("sqlite") / "homeserver.db"
            return f"sqlite:///{path}"
        return postgres_databases.create()

    return make


RATE_LIMITED = ("register", "login", "send_to_device", "room_keys_upload")


def test_config(database_url: str, **overrides: object) -> Config:
    """Settings for a test server: cheap password hashing, registration on."""
    values: dict[str, object] = {
        "database_url": database_url,
        "enable_registration": True,
        "password_time_cost": 1,
        "password_memory_cost_kib": 1024,
        "password_parallelism": 1,
        "log_level": "warning",
        "database_pool_size": 4,
        # The suite registers hundreds of users and logs in many times from 127.0.0.1, and
        # uploads in quick loops: limits far above that (tests of the limits set their own).
        **{f"{name}_per_minute": 6_000_000 for name in RATE_LIMITED},
        **{f"{name}_burst": 100_000 for name in RATE_LIMITED},
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server_factory(new_database_url):
    """Start extra servers: `server_factory(backend, **config overrides)`."""
    started: list[ServerHandle] = []

    def start(backend: str, database_url: str | None = None, **overrides: object) -> ServerHandle:
        url = database_url or new_database_url(backend)
        handle = ServerHandle(test_config(url, **overrides))
        handle.start()
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="session")
def server(backend: str, server_factory) -> ServerHandle:
    """The shared server of this backend; tests isolate themselves with fresh users."""
    return server_factory(backend)


@pytest.fixture
def api(server: ServerHandle) -> Iterator[Api]:
    with Api(server.base_url) as client:
        yield client


@pytest.fixture
def db(backend: str, new_database_url) -> Iterator[Database]:
    """A freshly migrated database for storage-level tests."""
    database = Database(new_database_url(backend), pool_size=4)
    upgrade(database.engine)
    yield database
    database.close()


@pytest.fixture
def homeserver(backend: str, new_database_url) -> Iterator[HomeServer]:
    """A homeserver object (no HTTP) on a fresh database, for service-level tests."""
    hs = HomeServer(test_config(new_database_url(backend)))
    hs.start()
    yield hs
    hs.close()
