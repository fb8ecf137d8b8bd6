"""Cross-process wake-ups over PostgreSQL LISTEN/NOTIFY.

Every process LISTENs on one channel in a background thread. When a process wakes its own
long-polls it also publishes the user IDs with `pg_notify`, sent after the change committed;
the other processes feed them to their notifier. Payloads carry the sender's process token so
a process ignores its own notifications, and are split to stay under PostgreSQL's 8000-byte
payload limit.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

logger = logging.getLogger(__name__)

CHANNEL = "mxkeys_wakeup"
MAX_PAYLOAD = 7900


def _libpq_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


class PostgresWakeups:
    def __init__(self, url: str, deliver: Callable[[list[str], list[str]], None]) -> None:
        self.url = _libpq_url(url)
        self.deliver = deliver
        self.token = secrets.token_hex(6)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="mxkeys-listen", daemon=True)
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mxkeys-notify")
        self._send_conn: psycopg.Connection | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sender.shutdown(wait=True)
        if self._send_conn is not None:
            self._send_conn.close()

    def publish(self, user_ids: list[str], streams: list[str]) -> None:
        """Queue a notification for the other processes (never blocks the event loop)."""
        for payload in self._payloads(user_ids, streams):
            self._sender.submit(self._send, payload)

    def _payloads(self, user_ids: list[str], streams: list[str]) -> list[str]:
        """`token`, then the stream names joined by commas, then one user ID per line."""
        head = self.token + "\n" + ",".join(streams)
        payloads: list[str] = []
        current: list[str] = []
        size = len(head)
        for user_id in user_ids:
            if current and size + len(user_id.encode()) + 1 > MAX_PAYLOAD:
                payloads.append(head + "\n" + "\n".join(current))
                current, size = [], len(head)
            current.append(user_id)
            size += len(user_id.encode()) + 1
        if current:
            payloads.append(head + "\n" + "\n".join(current))
        return payloads

    def _send(self, payload: str) -> None:
        for attempt in range(2):
            try:
                if self._send_conn is None or self._send_conn.closed:
                    self._send_conn = psycopg.connect(self.url, autocommit=True)
                self._send_conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                return
            except psycopg.Error:
                self._send_conn = None
                if attempt:
                    logger.exception("could not publish a wake-up notification")

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5, stop_after=100):
                            token, streams, *users = notify.payload.split("\n")
                            if token != self.token and users:
                                self.deliver(users, streams.split(","))
            except psycopg.Error:
                logger.exception("wake-up listener lost its connection; reconnecting")
                self._ready.set()
                self._stop.wait(1)
