"""The edge of the ASGI app: raw-path routing, CORS, error rendering, access log, metrics."""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mxkeys.api.http import JSONResponse, error_response
from mxkeys.config import parse_networks
from mxkeys.errors import MatrixError
from mxkeys.metrics import DURATION, REQUESTS

access_log = logging.getLogger("mxkeys.access")
logger = logging.getLogger(__name__)

# The label children of REQUESTS and DURATION per (method, route template, status): a
# small set (unmatched paths share the "unmatched" route; odd methods stop being cached).
_METRICS: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_METRICS_CACHED = 4096

# The spec's "Web Browser Clients" section: every response carries these.
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"X-Requested-With, Content-Type, Authorization"),
]


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _unhandled_response(scope: Scope, exc: Exception) -> JSONResponse:
    """The answer to an exception no endpoint turned into a response."""
    if isinstance(exc, MatrixError):
        return error_response(exc)
    if isinstance(exc, HTTPException):
        if exc.status_code in (404, 405):
            # (The router's: no such path, or another method. A 405 names the allowed
            # methods in `Allow`, as HTTP requires.)
            error = "Unrecognized request" if exc.status_code == 404 else "Method not allowed"
            body = {"errcode": "M_UNRECOGNIZED", "error": error}
        else:
            body = {"errcode": "M_UNKNOWN", "error": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    logger.error("unhandled error on %s %s", scope["method"], scope["path"][:200], exc_info=exc)
    return JSONResponse({"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500)


class TrustedProxies:
    """The reverse proxies whose `X-Forwarded-For` names the client (setting
    `trusted_proxies`). Behind a chain of them, the client is the nearest address in the
    header that is not one of them, read from the right; an address a client wrote itself
    further left is never believed. The same rule as uvicorn's, which mxkeys turns off to
    apply it here, with addresses and networks that can be set."""

    _CACHED = 4096

    def __init__(self, spec: str) -> None:
        self.networks = parse_networks(spec)
        self._known: dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self.networks)
            if len(self._known) < self._CACHED:
                self._known[host] = known
        return known

    def resolve(self, scope: Scope) -> None:
        """Name the client in `scope["client"]` from the header, if a trusted peer sent it."""
        peer = scope.get("client")
        if not self.networks or not peer or not self.trusts(peer[0]):
            return
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                hosts = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                if hosts:
                    client = next((h for h in reversed(hosts) if not self.trusts(h)), hosts[0])
                    scope["client"] = (client[:100], 0)
                return


class EdgeMiddleware:
    """Everything done to every HTTP request before routing and after the response.

    - Routing runs on the raw (still percent-encoded) path, so an encoded `/` inside a path
      parameter (megolm session IDs are base64) does not split a segment; endpoints decode
      parameters themselves.
    - CORS headers on every response; OPTIONS pre-flight requests answered here.
    - The client's address, from `X-Forwarded-For` when a trusted proxy sent the request.
    - Errors: endpoints answer their own Matrix errors (`api.routing.Endpoint`); what comes out
      of the router (404 and 405 from routing, a Matrix error raised while a response is made,
      any other exception: 500) is answered here, as long as no response has started. Once
      one has, the exception goes to the server, which closes the connection.
    - One access-log line and the Prometheus figures per request.

    It is the app the server runs: `request.app` is this object, and `state.homeserver` the
    homeserver the endpoints serve.
    """

    def __init__(self, app: ASGIApp, trusted_proxies: TrustedProxies | None = None) -> None:
        self.app = app
        self.state = State()
        self.proxies = trusted_proxies or TrustedProxies("")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path")
        if raw_path:
            scope["path"] = raw_path.decode("latin-1").split("?", 1)[0]
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        *CORS_HEADERS,
                        (b"content-length", b"2"),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"{}"})
            return

        scope["app"] = self
        self.proxies.resolve(scope)
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *CORS_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if status:
                raise
            await _unhandled_response(scope, exc)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self._record(scope, status or 500, elapsed)

    @staticmethod
    def _record(scope: Scope, status: int, elapsed: float) -> None:
        route = route_template(scope)
        method: Any = scope["method"]
        key = (method, route, status)
        metrics = _METRICS.get(key)
        if metrics is None:
            # Label lookups take a lock and build tuples: once per (method, route, status).
            metrics = (REQUESTS.labels(method, route, str(status)), DURATION.labels(method, route))
            if len(_METRICS) < _METRICS_CACHED:
                _METRICS[key] = metrics
        metrics[0].inc()
        metrics[1].observe(elapsed)
        # The metrics keep one "unmatched" label; the log names the path a client asked for,
        # so an operator sees which endpoints their clients call that mxkeys does not serve.
        logged_route = route if route != "unmatched" else "unmatched:" + scope["path"][:200]
        access_log.info(
            "%s %s %d %.1fms %s",
            method,
            logged_route,
            status,
            elapsed * 1000,
            scope.get("mxkeys.user", "-"),
        )
