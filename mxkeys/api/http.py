"""Request parsing and response shaping shared by every endpoint module."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from mxkeys.errors import (
    MatrixError,
    bad_json,
    invalid_param,
    missing_param,
    not_json,
    too_large,
)
from mxkeys.json_checks import check_request
from mxkeys.services.auth import Requester

if TYPE_CHECKING:
    from mxkeys.homeserver import HomeServer

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_MISSING_FIELD = re.compile(r"Object missing required field `([^`]*)`")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def json_response(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status)


def error_response(error: MatrixError) -> JSONResponse:
    return JSONResponse(error.to_json(), status_code=error.status, headers=error.headers or None)


def homeserver(request: Request) -> HomeServer:
    return request.app.state.homeserver


async def read_body(request: Request) -> bytes:
    """The request body, refusing anything over the configured limit before reading it all."""
    limit = homeserver(request).config.max_request_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    # JSON text is UTF-8 (RFC 8259). Checked once here, for the whole body: parts of it are
    # kept undecoded (`msgspec.Raw`) and decoded later, and a typed msgspec decode reports a
    # bad byte inside a string as a UnicodeDecodeError rather than a DecodeError. (About 20 µs
    # for a 180 KB backup upload.)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise not_json("Request body is not valid UTF-8") from None
    return body


def decode_json(body: bytes, model: type[T]) -> T:
    """Decode and validate a JSON body in one pass, mapping failures to Matrix errors.

    Besides the model's own rules this rejects what Matrix JSON cannot hold: invalid UTF-8,
    lone surrogates, NaN/Infinity and numbers out of range, JSON nested more than
    `json_checks.MAX_DEPTH` levels and integers outside canonical JSON's range.
    """
    if b"\\u0000" in body:
        # PostgreSQL text cannot hold U+0000, and no Matrix identifier or key contains it:
        # refuse it on every backend alike (Synapse refuses it too).
        raise bad_json("JSON strings may not contain U+0000")
    try:
        value = msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as e:
        message = str(e)
        missing = _MISSING_FIELD.match(message)
        if missing:
            raise missing_param(f"Missing parameter: {missing.group(1)}") from None
        raise bad_json(message) from None
    except msgspec.DecodeError:
        raise not_json() from None
    except RecursionError:
        # msgspec stops at the interpreter's recursion limit; `check_json` sets the real one.
        raise bad_json("Request body nested too deeply") from None
    # Depth and integer range (`mxkeys.json_checks`); `msgspec.Raw` parts are the caller's.
    check_request(value, model)
    return value


async def json_body(request: Request, model: type[T]) -> T:
    return decode_json(await read_body(request), model)


async def optional_json_body(request: Request, model: type[T], default: T) -> T:
    """For endpoints whose body clients may leave out (e.g. the first step of UIA)."""
    body = await read_body(request)
    if not body.strip():
        return default
    return decode_json(body, model)


def path_param(request: Request, name: str) -> str:
    """A path parameter, percent-decoded exactly once.

    Routing matches the raw path (see `middleware.RawPathMiddleware`), so an encoded `/` in a
    room or session ID stays inside its segment.
    """
    raw = request.path_params[name]
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise invalid_param(f"Path parameter {name} is not valid UTF-8") from None
    if "\x00" in value:
        raise invalid_param(f"Path parameter {name} may not contain U+0000")
    return value


def query_param(request: Request, name: str, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if value is None and required:
        raise missing_param(f"Missing query parameter: {name}")
    if value is not None and "\x00" in value:
        raise invalid_param(f"Query parameter {name} may not contain U+0000")
    return value


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value in ("true", "false"):
        return value == "true"
    raise invalid_param(f"Query parameter {name} must be 'true' or 'false'")


def access_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        if not token.isascii():
            # (Headers arrive as latin-1.) No token we issue has other characters.
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token")
        return token.strip()
    return request.query_params.get("access_token")


async def requester(request: Request) -> Requester:
    """The authenticated user; 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise."""
    token = access_token(request)
    if not token:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    client = request.client
    who = await homeserver(request).auth.authenticate(
        token,
        client.host if client else None,
        request.headers.get("user-agent"),
    )
    request.scope["mxkeys.user"] = who.user_id
    return who


# "Client Closed Request": what nginx and Synapse log for a request whose client went away.
CLIENT_CLOSED_REQUEST = 499


async def _until_disconnected(request: Request) -> None:
    """Return once the client has closed the connection.

    Only for requests whose body has been read (or has none): the ASGI server answers
    `receive()` with `http.disconnect` when the connection goes away, and blocks until then.
    """
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Run `work`, but cancel it and return None if the client disconnects first.

    ASGI servers do not cancel a handler whose client has gone; a long wait (a long-polling
    `/sync`) would otherwise run to its timeout for nobody, and hold up a graceful shutdown.
    `work` runs in the request's own task, which a watcher task cancels on disconnect: when
    it completes, the response goes out in the same step (no second task to wait for).
    """
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        await _until_disconnected(request)
        disconnected = True
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not disconnected:
            raise
        # Our own cancellation: take it back so enclosing timeouts see none.
        task.uncancel()
        return None
    finally:
        watcher.cancel()
