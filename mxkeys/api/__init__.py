"""HTTP only: parse and validate a request, call a service, shape the response.

Each module covers one area of the spec and exports `routes`, with paths relative to the
client API prefix; they are mounted under `/_matrix/client/v3` and the legacy `r0` prefix.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from mxkeys.api import (
    account,
    account_data,
    cross_signing,
    device_lists,
    devices,
    filters,
    keys,
    login,
    profile,
    pushrules,
    register,
    room_keys,
    rooms,
    sync,
    to_device,
    versions,
)
from mxkeys.api.routing import endpoint_route

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")

CLIENT_MODULES = [
    account,
    account_data,
    cross_signing,
    device_lists,
    devices,
    filters,
    keys,
    login,
    profile,
    pushrules,
    register,
    room_keys,
    rooms,
    sync,
    to_device,
    versions,
]


def _routed(route: BaseRoute, prefix: str = "") -> Route:
    """The module's route under `prefix`, its handler wrapped as an `Endpoint`."""
    assert isinstance(route, Route)
    methods = [m for m in (route.methods or ()) if m != "HEAD"]
    return endpoint_route(prefix + route.path, route.endpoint, methods, route.name)


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [_routed(route) for route in versions.unprefixed_routes]
    for prefix in CLIENT_PREFIXES:
        for module in CLIENT_MODULES:
            routes += [_routed(route, prefix) for route in module.routes]
    return routes
