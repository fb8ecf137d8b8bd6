"""A minimal HTTP/1.1 keep-alive connection for workloads that hold many requests open.

httpx keeps every connection of a client in one pool and scans the whole pool on each
request and each response (`is_idle`/`has_expired` per connection), so with a few hundred
long-polls in flight the benchmark client spends its time there, not the server. A real
device has its own connection; `Http1Connection` is that: one socket, one request at a time,
the response read by an `asyncio.Protocol` and time-stamped the moment its last byte
arrives, before anything decodes it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

_decode = msgspec.json.decode
_encode = msgspec.json.encode


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.perf_counter() when the last byte was read

    def json(self) -> Any:
        return _decode(self.body)


def _head(buffer: bytearray) -> tuple[int, dict[str, str], int] | None:
    """(status, headers, where the body starts) once the head is complete, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, end + 4


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """The body of a complete chunked encoding at the start of `data`, and the bytes it
    used (trailers included); None if it is not complete yet."""
    body = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(data[position:line_end].split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", position - 2)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        if len(data) < position + size + 2:
            return None
        body += data[position : position + size]
        position += size + 2


class _Protocol(asyncio.Protocol):
    """Reads one response at a time. The work per arriving piece is constant (a length check,
    or a look at the last bytes for the end of a chunked body), so a 20 MB body costs the
    client no more than its copy."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: tuple[int, dict[str, str], int] | None = None
        self.waiter: asyncio.Future[RawResponse] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            done = self._complete()
        except (ValueError, IndexError) as e:
            waiter.set_exception(ConnectionError(f"malformed HTTP response: {e}"))
            return
        if done is None:
            return
        received_at = time.perf_counter()
        status, headers, body = done
        self.waiter = None
        waiter.set_result(RawResponse(status, headers, body, received_at))

    def _complete(self) -> tuple[int, dict[str, str], bytes] | None:
        """The response, taken out of the buffer, once all of it has arrived."""
        if self.head is None:
            self.head = _head(self.buffer)
            if self.head is None:
                return None
        status, headers, start = self.head
        if headers.get("transfer-encoding", "").lower() == "chunked":
            # A chunked body ends with the zero-size chunk and an empty line.
            if not self.buffer.endswith(b"\r\n\r\n"):
                return None
            dechunked = _dechunk(bytes(self.buffer[start:]))
            if dechunked is None:
                return None
            body, used = dechunked
        else:
            used = int(headers.get("content-length", "0"))
            if len(self.buffer) < start + used:
                return None
            body = bytes(self.buffer[start : start + used])
        del self.buffer[: start + used]
        self.head = None
        return status, headers, body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))


class Http1Connection:
    """One keep-alive connection to `base_url`, reopened if the server closes it."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("Http1Connection speaks plain http only")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._protocol: _Protocol | None = None

    async def _connected(self) -> _Protocol:
        if self._protocol is None or self._protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
        return self._protocol

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> RawResponse:
        """Send a request (a JSON value, or a body already encoded as JSON) and wait for the
        whole response."""
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        body = content if content is not None else b"" if json is None else _encode(json)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if json is not None or content is not None:
            lines.append("Content-Type: application/json")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        protocol = await self._connected()
        if protocol.waiter is not None:
            raise RuntimeError("one request at a time on an Http1Connection")
        protocol.waiter = asyncio.get_running_loop().create_future()
        assert protocol.transport is not None
        protocol.transport.write(data)
        response = await protocol.waiter
        if response.headers.get("connection", "").lower() == "close":
            protocol.transport.close()
        return response

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
