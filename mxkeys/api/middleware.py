"""ASGI wrappers around the router: raw-path routing, CORS, access log and metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("mxkeys.access")

REQUESTS = Counter(
    "mxkeys_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
DURATION = Histogram(
    "mxkeys_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

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


class EdgeMiddleware:
    """Everything done to every HTTP request before routing and after the response.

    - Routing runs on the raw (still percent-encoded) path, so an encoded `/` inside a path
      parameter (megolm session IDs are base64) does not split a segment; endpoints decode
      parameters themselves.
    - CORS headers on every response; OPTIONS pre-flight requests answered here.
    - One access-log line and the Prometheus figures per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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

        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *CORS_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self._record(scope, status, elapsed)

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
