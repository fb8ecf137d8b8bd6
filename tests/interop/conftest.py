"""Fixtures for the interoperability tests: a fresh mxkeys per scenario, and its access log.

Every request the server answers is logged on `mxkeys.access` as one line,
`METHOD ROUTE STATUS DURATION USER` (ROUTE is `unmatched:PATH` when no endpoint matched); the
scenarios collect those lines to check that nothing failed on the server, that clients called
no endpoint mxkeys lacks (unless the scenario meant to), and to list what a client calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import ServerHandle

UNMATCHED = "unmatched:"  # how the access log names a path no endpoint matched


@dataclass(frozen=True)
class AccessLine:
    method: str
    route: str
    status: int

    @property
    def unmatched(self) -> bool:
        return self.route.startswith(UNMATCHED)

    def __str__(self) -> str:
        return f"{self.status} {self.method} {self.route}"


class AccessLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[AccessLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        method, route, status = record.args[:3]  # type: ignore[index]
        self.lines.append(AccessLine(str(method), str(route), int(status)))

    def routes(self) -> list[str]:
        """Distinct `METHOD ROUTE` pairs that were served, in a stable order."""
        return sorted({f"{line.method} {line.route}" for line in self.lines if not line.unmatched})

    def unmatched(self) -> list[str]:
        """`METHOD PATH` of the requests no endpoint of mxkeys matched (404 M_UNRECOGNIZED)."""
        return [f"{line.method} {line.route[len(UNMATCHED):]}" for line in self.lines
                if line.unmatched]

    def server_errors(self) -> list[AccessLine]:
        """Requests the server failed on (5xx) or refused for their method (405)."""
        return [line for line in self.lines if line.status >= 500 or line.status == 405]


@dataclass
class InteropServer:
    handle: ServerHandle
    access: AccessLog

    @property
    def base_url(self) -> str:
        return self.handle.base_url


@pytest.fixture
def interop_server(backend: str, server_factory) -> Iterator[InteropServer]:
    """A fresh mxkeys (new database, registration on) whose access log is collected."""
    logger = logging.getLogger("mxkeys.access")
    access = AccessLog()
    previous_level = logger.level
    logger.addHandler(access)
    logger.setLevel(logging.INFO)
    handle = server_factory(backend)
    try:
        yield InteropServer(handle, access)
    finally:
        handle.stop()
        logger.removeHandler(access)
        logger.setLevel(previous_level)
