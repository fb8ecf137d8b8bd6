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


def build_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = list(versions.unprefixed_routes)
    for prefix in CLIENT_PREFIXES:
        for module in CLIENT_MODULES:
            for route in module.routes:
                assert isinstance(route, Route)
                routes.append(
                    Route(
                        prefix + route.path,
                        route.endpoint,
                        methods=[m for m in (route.methods or ()) if m != "HEAD"],
                        name=route.name,
                    )
                )
    return routes
