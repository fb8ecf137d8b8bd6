"""Limits on every write path: rate limits (429 M_LIMIT_EXCEEDED with retry_after_ms), sizes
(413 M_TOO_LARGE, nothing stored), full to-device inboxes, and the request deadline (504).

Each test runs its own server with low limits (`server_factory`); the shared server's limits
are far above what the suite sends (`tests/conftest.py::test_config`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e_keys import new_device, setup_device
from tests.helpers import Api, User, assert_error, unique_name
from tests.snapshots import snapshot

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
UNLIMITED = {
    f"{name}_per_minute": 0
    for name in ("register", "login", "keys_claim", "send_to_device", "room_keys_upload")
}


def limited(response: Any) -> None:
    body = assert_error(response, 429, "M_LIMIT_EXCEEDED")
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
    assert int(response.headers["Retry-After"]) >= 1


def backup(api: Api, user: User) -> str:
    body = {"algorithm": ALGORITHM, "auth_data": {}}
    return api.post("room_keys/version", user, json=body).json()["version"]


def key(i: int = 0) -> dict[str, Any]:
    return {
        "first_message_index": i,
        "forwarded_count": 0,
        "is_verified": False,
        "session_data": {"ciphertext": "c"},
    }


# -- rate limits ------------------------------------------------------------------------------


def test_registration_is_limited_per_address(backend: str, server_factory) -> None:
    server = server_factory(backend, **{**UNLIMITED, "register_per_minute": 1, "register_burst": 2})
    with Api(server.base_url) as api:
        api.register()  # two requests: the UIA step and the completion
        limited(api.post("register", json={"username": "late", "password": "p"}))
        assert api.get("register/available", params={"username": "late"}).status_code == 200


@pytest.mark.parametrize("trusted", ["127.0.0.1,::1", ""])
def test_forwarded_address_only_from_trusted_proxies(
    backend: str, server_factory, trusted: str
) -> None:
    """X-Forwarded-For names the client only when a trusted proxy (by default: loopback, where
    the tests' requests come from) sent it; otherwise every request counts for the peer."""
    server = server_factory(backend, **{**UNLIMITED, "register_per_minute": 1,
                                        "register_burst": 1, "trusted_proxies": trusted})
    with Api(server.base_url) as api:

        def start_registration(address: str) -> Any:
            return api.post("register", json={"username": unique_name(), "password": "p"},
                            headers={"X-Forwarded-For": f"{address}, 127.0.0.1"})

        assert start_registration("198.51.100.1").status_code == 401  # the UIA step
        second = start_registration("198.51.100.2")
        if trusted:
            assert second.status_code == 401  # another address, its own bucket
            limited(start_registration("198.51.100.2"))
        else:
            limited(second)  # the header is not believed: one bucket, loopback's


def test_login_is_limited_per_address_and_per_user(backend: str, server_factory) -> None:
    """Per address (X-Forwarded-For from the loopback proxy names it; only a header) and per
    user: either bucket running dry refuses the login."""
    server = server_factory(backend, **{**UNLIMITED, "login_per_minute": 1, "login_burst": 3})
    with Api(server.base_url) as api:
        alice, bob = api.register(), api.register()

        def login(user: User, address: str) -> Any:
            body = {"type": "m.login.password", "user": user.user_id, "password": user.password}
            return api.post("login", json=body, headers={"X-Forwarded-For": address})

        for i in range(3):  # alice from three addresses
            assert login(alice, f"192.0.2.{i}").status_code == 200
        limited(login(alice, "192.0.2.50"))  # her bucket is empty, whatever the address
        assert login(bob, "192.0.2.50").status_code == 200
        assert login(bob, "192.0.2.50").status_code == 200
        limited(login(bob, "192.0.2.50"))  # bob has a token left; that address has none


@pytest.fixture
def per_user_limits(backend: str, server_factory) -> Any:
    return server_factory(
        backend,
        **{
            **UNLIMITED,
            "keys_claim_per_minute": 1,
            "keys_claim_burst": 2,
            "send_to_device_per_minute": 1,
            "send_to_device_burst": 2,
            "room_keys_upload_per_minute": 1,
            "room_keys_upload_burst": 2,
        },
    )


def test_claim_send_to_device_and_backup_upload_are_limited_per_user(per_user_limits) -> None:
    with Api(per_user_limits.base_url) as api:
        alice, bob = api.register(), api.register()
        target = setup_device(api, otks=5)
        claim = {"one_time_keys": {target.user.user_id: {target.device_id: "signed_curve25519"}}}
        for _ in range(2):
            assert api.post("keys/claim", alice, json=claim).status_code == 200
        limited(api.post("keys/claim", alice, json=claim))
        assert api.post("keys/claim", bob, json=claim).status_code == 200  # per user

        message = {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}
        for i in range(2):
            assert api.put(f"sendToDevice/m.x/t{i}", alice, json=message).status_code == 200
        limited(api.put("sendToDevice/m.x/t9", alice, json=message))

        version = backup(api, alice)
        params = {"version": version}
        for i in range(2):
            body = {"rooms": {"!r:x": {"sessions": {f"s{i}": key()}}}}
            assert api.put("room_keys/keys", alice, json=body, params=params).status_code == 200
        body = {"rooms": {"!r:x": {"sessions": {"late": key()}}}}
        limited(api.put("room_keys/keys", alice, json=body, params=params))
        assert api.get(f"room_keys/version/{version}", alice).json()["count"] == 2


def test_workers_share_one_limit(request: pytest.FixtureRequest, new_database_url,
                                 server_factory) -> None:
    """Two servers on one PostgreSQL database: the bucket is in the database, so together they
    allow what one allows (`mxkeys serve --workers N` does not multiply limits)."""
    from tests.conftest import selected_backends

    if "postgres" not in selected_backends(request.config):
        pytest.skip("PostgreSQL backend not selected")
    url = new_database_url("postgres")
    settings = {**UNLIMITED, "keys_claim_per_minute": 1, "keys_claim_burst": 3}
    one = server_factory("postgres", database_url=url, **settings)
    two = server_factory("postgres", database_url=url, **settings)
    with Api(one.base_url) as a, Api(two.base_url) as b:
        alice = a.register()
        claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
        statuses = [api.post("keys/claim", alice, json=claim).status_code
                    for api in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 429, 429, 429]


# -- sizes ------------------------------------------------------------------------------------


@pytest.fixture
def small_limits(backend: str, server_factory) -> Any:
    return server_factory(
        backend,
        max_keys_per_upload=5,
        max_backup_keys_per_request=3,
        max_to_device_messages_per_request=2,
        max_queued_to_device_messages=3,
        max_account_data_bytes=100,
    )


def test_size_limits_refuse_the_whole_request(small_limits) -> None:
    with Api(small_limits.base_url) as api:
        device = setup_device(api, otks=2)
        user = device.user
        version = backup(api, user)
        before = snapshot(api, user)

        body = {"one_time_keys": device.otks(5, prefix="big"),
                "fallback_keys": {"signed_curve25519:fb2": device.otk(fallback=True)}}
        assert_error(api.post("keys/upload", user, json=body), 413, "M_TOO_LARGE")
        rooms = {"!r:x": {"sessions": {f"s{i}": key() for i in range(4)}}}
        response = api.put("room_keys/keys", user, json={"rooms": rooms},
                           params={"version": version})
        assert_error(response, 413, "M_TOO_LARGE")
        assert snapshot(api, user) == before

        other = api.register()
        message = {"messages": {other.user_id: {"A": {}, "B": {}, "C": {}}}}
        assert_error(api.put("sendToDevice/m.x/big", user, json=message), 413, "M_TOO_LARGE")

        path = f"user/{quote(user.user_id)}/account_data/m.big"
        assert_error(api.put(path, user, json={"x": "y" * 200}), 413, "M_TOO_LARGE")
        assert_error(api.get(path, user), 404, "M_NOT_FOUND")
        assert api.put(path, user, json={"x": "small"}).status_code == 200

        # Exactly at the limits is fine.
        body = {"one_time_keys": device.otks(5, prefix="ok")}
        assert api.post("keys/upload", user, json=body).status_code == 200
        rooms = {"!r:x": {"sessions": {f"s{i}": key() for i in range(3)}}}
        response = api.put("room_keys/keys", user, json={"rooms": rooms},
                           params={"version": version})
        assert response.json()["count"] == 3


def test_full_inbox_drops_new_messages_only_for_that_device(small_limits) -> None:
    with Api(small_limits.base_url) as api:
        sender, receiver = api.register(), api.register()
        second = api.login(receiver)
        for i in range(5):
            messages = {receiver.user_id: {receiver.device_id: {"n": i}}}
            if i == 4:
                messages[receiver.user_id][second.device_id] = {"n": i}
            body = {"messages": messages}
            assert api.put(f"sendToDevice/m.x/q{i}", sender, json=body).status_code == 200
        first_sync = api.get("sync", receiver).json()
        assert [e["content"]["n"] for e in first_sync["to_device"]["events"]] == [0, 1, 2]
        assert [e["content"]["n"] for e in api.get("sync", second).json()["to_device"]["events"]
                ] == [4]


def test_full_inbox_counts_devices_reached_through_star(small_limits) -> None:
    with Api(small_limits.base_url) as api:
        sender, receiver = api.register(), api.register()
        for i in range(5):
            body = {"messages": {receiver.user_id: {"*": {"n": i}}}}
            assert api.put(f"sendToDevice/m.x/s{i}", sender, json=body).status_code == 200
        events = api.get("sync", receiver).json()["to_device"]["events"]
        assert [e["content"]["n"] for e in events] == [0, 1, 2]


def test_limits_are_settings_with_defaults() -> None:
    from mxkeys.config import Config

    config = Config()
    assert config.max_keys_per_upload == 1000
    assert config.max_backup_keys_per_request == 10_000
    assert config.max_to_device_messages_per_request == 10_000
    assert config.max_queued_to_device_messages == 10_000
    assert config.max_account_data_bytes == 1024 * 1024
    assert config.request_timeout_ms == 60_000
    assert (config.register_per_minute, config.register_burst) == (10, 5)
    assert (config.login_per_minute, config.login_burst) == (10, 5)


# -- deadline ---------------------------------------------------------------------------------


def test_slow_requests_are_answered_504(backend: str, server_factory) -> None:
    server = server_factory(backend, request_timeout_ms=300)
    hs = server.homeserver

    async def slow_query(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(30)

    with Api(server.base_url) as api:
        user = api.register()
        hs.keys.query = slow_query
        started = time.monotonic()
        response = api.post("keys/query", user, json={"device_keys": {user.user_id: []}})
        elapsed = time.monotonic() - started
        assert_error(response, 504, "M_UNKNOWN")
        assert response.headers["access-control-allow-origin"] == "*"
        assert elapsed < 5
        # The server is fine afterwards, and a long-poll may outlast the request timeout.
        assert api.get("account/whoami", user).status_code == 200
        started = time.monotonic()
        since = api.get("sync", user).json()["next_batch"]
        response = api.get("sync", user, params={"since": since, "timeout": "800"})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 0.7


def test_new_device_cannot_exceed_the_unclaimed_key_cap_in_one_go(small_limits) -> None:
    """(The per-upload limit applies before the per-device cap, and neither stores anything.)"""
    with Api(small_limits.base_url) as api:
        device = new_device(api.register())
        body = {"one_time_keys": device.otks(6)}
        assert_error(api.post("keys/upload", device.user, json=body), 413, "M_TOO_LARGE")
        counts = api.post("keys/upload", device.user, json={}).json()["one_time_key_counts"]
        assert counts == {"signed_curve25519": 0}
