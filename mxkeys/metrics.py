"""The Prometheus figures of what mxkeys does, besides its HTTP requests (those are counted
at the edge, `api/middleware.py`). Exported at `/metrics` with `--enable-metrics`; all of
them are per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
