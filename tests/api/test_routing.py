"""The indexed router picks exactly the route Starlette's in-order scan would pick."""

import re

import pytest
from starlette.routing import Match, Route

from mxkeys.api import build_routes
from mxkeys.api.routing import IndexedRouter
from tests.helpers import Api, assert_error

METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")


def _scan(routes, path: str, method: str) -> tuple[object, Match]:
    """Starlette's rule: the first full match, else the first partial one (405)."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route, match
        if match is Match.PARTIAL and partial is None:
            partial = route
    return (partial, Match.PARTIAL) if partial is not None else (None, Match.NONE)


def _sample_paths() -> list[str]:
    paths = []
    for route in build_routes():
        assert isinstance(route, Route)
        concrete = re.sub(r"\{[^}]*\}", "x%2Fy", route.path)
        paths += [concrete, concrete + "/", concrete + "/extra", concrete.rstrip("/") + "z"]
    return [
        *paths,
        "/", "/_matrix", "/_matrix/client", "/_matrix/client/v3", "/_matrix/client/v3/",
        "/_matrix/client/v4/sync", "/_matrix/federation/v1/version", "/unknown/a/b/c/d/e",
        "/_matrix/client/versions/", "/.well-known/matrix/client",
    ]


@pytest.mark.parametrize("method", METHODS)
def test_same_route_as_a_full_scan(method: str) -> None:
    routes = build_routes()
    router = IndexedRouter(routes)
    for path in _sample_paths():
        expected = _scan(routes, path, method)
        assert _scan(router.candidates(path), path, method) == expected, (method, path)


def test_candidates_are_few() -> None:
    """The point of the index: a request tries a handful of patterns, not all of them."""
    routes = build_routes()
    router = IndexedRouter(routes)
    assert len(routes) > 100
    for path in ("/_matrix/client/v3/sync", "/_matrix/client/v3/keys/claim",
                 "/_matrix/client/r0/room_keys/keys", "/_matrix/client/v3/sendToDevice/t/1"):
        assert len(router.candidates(path)) <= 20, path


def test_unknown_path_and_wrong_method(api: Api) -> None:
    assert_error(api.get("/_matrix/client/v3/no/such/endpoint"), 404, "M_UNRECOGNIZED")
    response = api.http.request("PATCH", "/_matrix/client/v3/sync")
    assert_error(response, 405, "M_UNRECOGNIZED")
    assert "GET" in response.headers["allow"]
