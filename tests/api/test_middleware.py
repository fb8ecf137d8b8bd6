"""`api/middleware.py` and `api/routing.Endpoint`: what the edge answers when a request fails,
driven at the ASGI level (no server), so that every path can be forced."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mxkeys.api.middleware import CORS_HEADERS, EdgeMiddleware, TrustedProxies
from mxkeys.api.routing import Endpoint
from mxkeys.errors import MatrixError

Message = dict[str, Any]


def _call(app: Any, method: str = "GET") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": method, "path": "/x", "raw_path": b"/x", "query_string": b"",
        "headers": [],
    }
    asyncio.run(EdgeMiddleware(app)(scope, receive, send))
    return sent


def _answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], Any]:
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    headers = dict(start["headers"])
    for name, value in CORS_HEADERS:
        assert headers[name] == value
    return start["status"], headers, json.loads(body["body"])


def _raising(exc: Exception) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise exc

    return app


def test_unexpected_exception_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mxkeys.api.middleware"):
        status, _, body = _answer(_call(_raising(RuntimeError("boom"))))
    assert status == 500
    assert body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert any("unhandled error on GET /x" in r.getMessage() and r.exc_info for r in caplog.records)


def test_matrix_error_outside_an_endpoint_is_rendered() -> None:
    error = MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=5)
    error.headers = {"Retry-After": "1"}
    status, headers, body = _answer(_call(_raising(error)))
    assert status == 429
    assert headers[b"retry-after"] == b"1"
    assert body == {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests",
                    "retry_after_ms": 5}


@pytest.mark.parametrize(("code", "error"), [(404, "Unrecognized request"),
                                             (405, "Method not allowed")])
def test_routing_errors_are_unrecognized(code: int, error: str) -> None:
    headers = {"Allow": "GET, HEAD"} if code == 405 else None
    status, sent_headers, body = _answer(_call(_raising(HTTPException(code, headers=headers))))
    assert status == code
    assert body == {"errcode": "M_UNRECOGNIZED", "error": error}
    if code == 405:
        assert sent_headers[b"allow"] == b"GET, HEAD"


def test_failure_after_the_response_started_goes_to_the_server() -> None:
    """No second response on top of one that has started: the server must close the
    connection, so the exception reaches it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        _call(app)


def test_endpoint_sends_the_handler_response_or_its_matrix_error() -> None:
    async def handler(request: Request) -> Response:
        if request.method == "PUT":
            raise MatrixError(403, "M_FORBIDDEN", "Not yours")
        return Response(b'{"ok":true}', media_type="application/json")

    status, _, body = _answer(_call(Endpoint(handler)))
    assert (status, body) == (200, {"ok": True})
    status, _, body = _answer(_call(Endpoint(handler), method="PUT"))
    assert (status, body) == (403, {"errcode": "M_FORBIDDEN", "error": "Not yours"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", b"198.51.100.7", "198.51.100.7"),
        # Read from the right: the proxies' own addresses are skipped, and what the client
        # wrote further left is not believed.
        ("127.0.0.1", b"203.0.113.66, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
        ("::1", b" 2001:db8::5 ", "2001:db8::5"),
        ("127.0.0.1", b"10.0.0.1, 10.0.0.2", "10.0.0.1"),  # all proxies: the first one
        ("127.0.0.1", b"unknown", "unknown"),
        ("192.0.2.1", b"198.51.100.7", "192.0.2.1"),  # not a proxy: the header is ignored
        ("127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_trusted_proxies_name_the_client(peer: str, forwarded: bytes | None, client: str) -> None:
    proxies = TrustedProxies("127.0.0.1, ::1, 10.0.0.0/8")
    headers = [(b"x-forwarded-for", forwarded)] if forwarded is not None else []
    scope: dict[str, Any] = {"client": (peer, 5000), "headers": headers}
    proxies.resolve(scope)
    assert scope["client"][0] == client


def test_no_trusted_proxies_ignores_the_header() -> None:
    scope: dict[str, Any] = {"client": ("127.0.0.1", 5000),
                             "headers": [(b"x-forwarded-for", b"198.51.100.7")]}
    TrustedProxies("").resolve(scope)
    assert scope["client"] == ("127.0.0.1", 5000)
