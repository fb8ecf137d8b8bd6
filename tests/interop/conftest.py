"""Fixtures for the interoperability tests: a fresh mxkeys per scenario, and its access log.

Every request the server answers is logged on `mxkeys.access` as one line,
`METHOD ROUTE STATUS DURATION USER`; the scenarios collect those lines to check that no
request went unrouted or failed on the server, and to list what a client calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import ServerHandle


@dataclass(frozen=True)
class AccessLine:
    method: str
    route: str
    status: int

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
        """Distinct `METHOD ROUTE` pairs that were called, in a stable order."""
        return sorted({f"{line.method} {line.route}" for line in self.lines})

    def server_problems(self) -> list[AccessLine]:
        """Requests no route matched, or that the server failed on (5xx)."""
        return [
            line
            for line in self.lines
            if line.route == "unmatched" or line.status >= 500 or line.status == 405
        ]


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
