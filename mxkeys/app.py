"""The ASGI application: routes, error rendering, and the homeserver's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from mxkeys.api import build_routes
from mxkeys.api.middleware import EdgeMiddleware, TrustedProxies
from mxkeys.api.routing import IndexedRouter, endpoint_route
from mxkeys.api.timeout import RequestTimeout
from mxkeys.config import Config
from mxkeys.homeserver import HomeServer
from mxkeys.services.housekeeping import run_forever
from mxkeys.services.notifier import Notifier
from mxkeys.storage.notifications import PostgresWakeups

logger = logging.getLogger(__name__)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


CONFIG_ENV = "_MXKEYS_WORKER_CONFIG"  # not MXKEYS_*: not a setting of its own


def answer_long_polls_on_exit(notifier: Notifier, loop: asyncio.AbstractEventLoop) -> None:
    """When the server is told to stop (SIGTERM, SIGINT), waiting `/sync` long-polls answer
    at once, with what they have, instead of waiting out the server's graceful-shutdown
    delay and being cut off (uvicorn then answers them 500 and logs a traceback); clients
    sync again, from the same token, against the next server.

    uvicorn has installed its own handlers by the time the app starts (they set the exit
    flag); this one is put in front of each. Only in the main thread, where signals arrive
    (a test server running in a thread has none)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue  # (no server handler to pass the signal on to)

        def handler(
            number: int, frame: types.FrameType | None, previous: Callable[..., Any] = previous
        ) -> None:
            loop.call_soon_threadsafe(notifier.close)
            previous(number, frame)

        signal.signal(signum, handler)


def app_from_environment() -> ASGIApp:
    """The app of one worker process of `mxkeys serve --workers N`."""
    config = Config(**json.loads(os.environ[CONFIG_ENV]))
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return create_app(config)


def create_app(config: Config, homeserver: HomeServer | None = None) -> ASGIApp:
    """The server as an ASGI app. It migrates the database when it starts."""
    hs = homeserver or HomeServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        hs.start()
        hs.notifier.bind_loop(asyncio.get_running_loop())
        answer_long_polls_on_exit(hs.notifier, asyncio.get_running_loop())
        wakeups = None
        if hs.db.dialect == "postgresql":
            # Several processes may share this database: wake each other's long-polls.
            wakeups = PostgresWakeups(config.database_url, hs.notifier.notify_users_threadsafe)
            wakeups.start()
            hs.notifier.publish = wakeups.publish
        housekeeping = asyncio.get_running_loop().create_task(run_forever(hs))
        logger.info("mxkeys serving %s on %s", config.server_name, config.listen)
        try:
            yield
        finally:
            housekeeping.cancel()
            if wakeups is not None:
                hs.notifier.publish = None
                wakeups.stop()
            await hs.to_device.flush_acknowledged()
            hs.close()

    routes = build_routes()
    if config.enable_metrics:
        routes.append(endpoint_route("/metrics", metrics, ["GET"], "metrics"))
    # The whole stack, outside in: the edge (CORS, errors, access log, metrics), deadlines
    # (504 past the deadline; see api/timeout.py), the router (routes looked up by their
    # leading path segments; api/routing.py), the endpoint.
    app = EdgeMiddleware(
        RequestTimeout(
            IndexedRouter(routes, lifespan=lifespan), timeout_ms=config.request_timeout_ms
        ),
        TrustedProxies(config.trusted_proxies),
    )
    app.state.homeserver = hs
    return app
