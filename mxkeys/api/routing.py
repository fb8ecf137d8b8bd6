"""Request routing that looks routes up instead of trying them all in turn.

Starlette's router tries every route's regular expression in order until one matches. With
two client prefixes (`v3`, `r0`) and every endpoint of the spec that is well over a hundred
patterns, and the busiest endpoints (`/sync`, `/keys/...`, `/room_keys/...`,
`/sendToDevice/...`) come late in the list: tens of microseconds a request, on every request.

`IndexedRouter` files each route under the literal path segments its pattern starts with
(up to `INDEX_DEPTH` of them; `/_matrix/client/v3/keys/claim` under
`("_matrix", "client", "v3", "keys")`), and a request only tries the routes filed under its own
leading segments, plus the few whose pattern has a parameter (or ends) within those segments.
The candidates keep their original order and are matched exactly as Starlette matches them,
so the outcome, including a 405 for a known path with another method, is the same as
trying every route. (It never redirects a path to its form with or without a trailing slash:
Matrix paths are exact, and mxkeys turned that off before this router existed.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from mxkeys.api.http import error_response
from mxkeys.errors import MatrixError

INDEX_DEPTH = 4


def _literal_prefix(path: str) -> tuple[str, ...] | None:
    """The first `INDEX_DEPTH` segments of a route's path if all are literal, else None."""
    segments = path.split("/")[1 : INDEX_DEPTH + 1]
    if len(segments) < INDEX_DEPTH or any("{" in s for s in segments):
        return None
    return tuple(segments)


Handler = Callable[[Request], Awaitable[Response]]


class Endpoint:
    """A route's handler as a bare ASGI app: it builds the request, calls the handler and sends
    the response it returns, or the Matrix error it raises.

    Starlette wraps a handler function in an exception-handling layer of its own, which also
    wraps every message the response sends; mxkeys renders its errors here and at the edge
    (`api/middleware.py`), so a request passes through one layer fewer, both ways."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.handler(Request(scope, receive, send))
        except MatrixError as e:
            response = error_response(e)
        await response(scope, receive, send)


def endpoint_route(
    path: str, handler: Handler, methods: Sequence[str] | None, name: str | None
) -> Route:
    """A route to `handler` (a function taking the request and returning a response)."""
    return Route(path, Endpoint(handler), methods=list(methods or ["GET"]), name=name)


class IndexedRouter(Router):
    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes, redirect_slashes=False, **kwargs)
        self._index: dict[tuple[str, ...], list[BaseRoute]] = {}
        self._unindexed: list[BaseRoute] = []
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the index from `self.routes` (after routes were added)."""
        keyed: dict[tuple[str, ...], list[int]] = {}
        unindexed: list[int] = []
        for position, route in enumerate(self.routes):
            key = _literal_prefix(route.path) if isinstance(route, Route) else None
            if key is None:
                unindexed.append(position)
            else:
                keyed.setdefault(key, []).append(position)
        self._unindexed = [self.routes[p] for p in unindexed]
        self._index = {
            key: [self.routes[p] for p in sorted(positions + unindexed)]
            for key, positions in keyed.items()
        }

    def candidates(self, path: str) -> list[BaseRoute]:
        key = tuple(path.split("/", INDEX_DEPTH + 1)[1 : INDEX_DEPTH + 1])
        return self._index.get(key, self._unindexed)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        root_path = scope.get("root_path", "")
        path = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self.candidates(path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            # A known path with another method: the route answers 405.
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await self.default(scope, receive, send)
