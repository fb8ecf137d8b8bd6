"""Every Prometheus figure mxkeys keeps, exported at `/metrics` with `--enable-metrics`; all
of them are per process. HTTP requests are counted at the edge (`api/middleware.py`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "mxkeys_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
DURATION = Histogram(
    "mxkeys_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

SYNC_WAITING = Gauge(
    "mxkeys_sync_waiting", "Long-polling /sync requests waiting for something new"
)
TO_DEVICE_QUEUED = Counter(
    "mxkeys_to_device_messages_queued_total", "To-device messages queued for local devices"
)
TO_DEVICE_REMOTE = Counter(
    "mxkeys_to_device_messages_remote_total",
    "To-device messages for users on other servers, dropped (mxkeys does not federate)",
)
