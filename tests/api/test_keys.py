"""/keys/upload, /keys/query and /keys/claim."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.e2e_keys import Device, new_device, setup_device, upload
from tests.helpers import CLIENT, Api, ServerHandle, assert_error

ALG = "signed_curve25519"


def query(api: Api, device: Device, users: dict[str, list[str]]) -> dict[str, Any]:
    response = api.post("keys/query", device.user, json={"device_keys": users})
    assert response.status_code == 200, response.text
    return response.json()


def claim(api: Api, device: Device, wanted: dict[str, dict[str, str]]) -> dict[str, Any]:
    response = api.post("keys/claim", device.user, json={"one_time_keys": wanted})
    assert response.status_code == 200, response.text
    return response.json()


def counts(api: Api, device: Device) -> dict[str, int]:
    return upload(api, device)["one_time_key_counts"]


@pytest.fixture(scope="module")
def limits_server(backend: str, server_factory) -> ServerHandle:
    """A server with a small one-time-key cap and no practical claim rate limit."""
    return server_factory(
        backend,
        max_unclaimed_one_time_keys=10,
        keys_claim_burst=100_000,
        keys_claim_per_minute=6_000_000,
    )


# -- upload ---------------------------------------------------------------------------------


def test_upload_and_query_device_keys(api: Api) -> None:
    user = api.register(initial_device_display_name="Alice's phone")
    device = new_device(user)
    keys = device.device_keys()
    body = upload(api, device, device_keys=keys)
    assert body == {"one_time_key_counts": {ALG: 0}}

    result = query(api, device, {user.user_id: []})
    expected = {**keys, "unsigned": {"device_display_name": "Alice's phone"}}
    assert result["device_keys"] == {user.user_id: {user.device_id: expected}}
    assert result["failures"] == {}


def test_query_without_display_name_and_by_device(api: Api) -> None:
    device = setup_device(api)
    other = new_device(api.login(device.user))
    upload(api, other, device_keys=other.device_keys())
    user_id = device.user.user_id

    both = query(api, device, {user_id: []})["device_keys"][user_id]
    assert set(both) == {device.device_id, other.device_id}
    one = query(api, device, {user_id: [other.device_id, "NOSUCHDEVICE"]})["device_keys"]
    assert set(one[user_id]) == {other.device_id}
    assert one[user_id][other.device_id]["unsigned"] == {}


def test_upload_requires_own_user_and_device(api: Api) -> None:
    device = setup_device(api)
    intruder = new_device(api.register())
    # Somebody else's user ID, or another device ID, in device_keys: refused.
    keys = device.device_keys()
    assert_error(
        api.post("keys/upload", intruder.user, json={"device_keys": keys}), 400, "M_BAD_JSON"
    )
    keys = intruder.device_keys(device_id="OTHERDEVICE")
    assert_error(
        api.post("keys/upload", intruder.user, json={"device_keys": keys}), 400, "M_BAD_JSON"
    )
    assert_error(api.post("keys/upload", json={"device_keys": keys}), 401, "M_MISSING_TOKEN")


def test_upload_validates_device_keys(api: Api) -> None:
    device = new_device(api.register())
    for missing in ("user_id", "device_id", "algorithms", "keys", "signatures"):
        keys = device.device_keys()
        del keys[missing]
        response = api.post("keys/upload", device.user, json={"device_keys": keys})
        assert_error(response, 400, "M_MISSING_PARAM")
    bad = device.device_keys()
    bad["keys"]["ed25519:SOMEOTHERDEVICE"] = bad["keys"].pop(f"ed25519:{device.device_id}")
    assert_error(api.post("keys/upload", device.user, json={"device_keys": bad}), 400, "M_BAD_JSON")
    bad = device.device_keys(algorithms="m.megolm.v1.aes-sha2")
    assert_error(api.post("keys/upload", device.user, json={"device_keys": bad}), 400, "M_BAD_JSON")
    assert_error(api.post("keys/upload", device.user, json={"device_keys": 5}), 400, "M_BAD_JSON")
    # Nothing was stored by the refused uploads.
    assert query(api, device, {device.user.user_id: []})["device_keys"] == {device.user.user_id: {}}


def test_upload_replaces_device_keys_and_drops_unsigned(api: Api) -> None:
    device = setup_device(api)
    keys = device.device_keys(unsigned={"device_display_name": "forged"})
    upload(api, device, device_keys=keys)
    got = query(api, device, {device.user.user_id: []})["device_keys"][device.user.user_id]
    del keys["unsigned"]
    assert got[device.device_id] == {**keys, "unsigned": {}}


def test_one_time_key_counts_and_idempotent_reupload(api: Api) -> None:
    device = new_device(api.register())
    otks = device.otks(5)
    otks["curve25519:plain"] = "AAAAplainkey"
    assert upload(api, device, one_time_keys=otks)["one_time_key_counts"] == {
        ALG: 5,
        "curve25519": 1,
    }
    # The same keys again (even with other signatures): a no-op.
    again = dict(otks)
    again["signed_curve25519:k0"] = {**otks["signed_curve25519:k0"], "signatures": {}}
    assert upload(api, device, one_time_keys=again)["one_time_key_counts"] == {
        ALG: 5,
        "curve25519": 1,
    }


def test_claimed_one_time_keys_keep_their_content(api: Api) -> None:
    """Whatever path an upload takes (all keys plain, or one with other fields), a claim
    hands each key back with the content it was uploaded with: escapes, Unicode, bare
    strings, extra fields and nesting included."""
    device = new_device(api.register())
    plain = device.otk()
    otks: dict[str, Any] = {
        "signed_curve25519:plain": plain,
        "curve25519:bare": 'AAAA\u00e9"\\/\u2028x',
        "signed_curve25519:extra": {**device.otk(), "extra": [1, {"a": None, "é": "\n"}]},
    }
    # Sent with spaces between tokens and non-ASCII characters escaped (`json.dumps`).
    assert upload(api, device, one_time_keys=otks)["one_time_key_counts"] == {
        ALG: 2,
        "curve25519": 1,
    }
    handed_out = {}
    for algorithm in (ALG, ALG, "curve25519"):
        wanted = {device.user.user_id: {device.device_id: algorithm}}
        got = claim(api, device, wanted)["one_time_keys"][device.user.user_id]
        handed_out.update(got[device.device_id])
    assert handed_out == otks
    # The same keys again are a no-op, and a changed one is refused, compared by content.
    device2 = new_device(api.register())
    assert upload(api, device2, one_time_keys=otks)["one_time_key_counts"][ALG] == 2
    assert upload(api, device2, one_time_keys=otks)["one_time_key_counts"][ALG] == 2
    changed = {**otks, "curve25519:bare": "BBBB"}
    response = api.post("keys/upload", device2.user, json={"one_time_keys": changed})
    assert_error(response, 400, "M_UNKNOWN")


def test_conflicting_one_time_key_is_refused_and_leaves_no_trace(api: Api) -> None:
    device = new_device(api.register())
    upload(api, device, one_time_keys=device.otks(2))
    body = {
        "device_keys": device.device_keys(),
        "one_time_keys": {
            "signed_curve25519:new": device.otk(),
            "signed_curve25519:k1": device.otk(),
        },
        "fallback_keys": {"signed_curve25519:fb": device.otk(fallback=True)},
    }
    error = assert_error(api.post("keys/upload", device.user, json=body), 400, "M_UNKNOWN")
    assert "signed_curve25519:k1" in error["error"]
    assert counts(api, device) == {ALG: 2}
    result = query(api, device, {device.user.user_id: []})
    assert result["device_keys"][device.user.user_id] == {}
    # No fallback key was stored either: claiming both keys leaves nothing.
    wanted = {device.user.user_id: {device.device_id: ALG}}
    claim(api, device, wanted)
    claim(api, device, wanted)
    assert claim(api, device, wanted)["one_time_keys"] == {}


def test_bad_fallback_key_stores_nothing(api: Api) -> None:
    device = new_device(api.register())
    body = {
        "one_time_keys": device.otks(3),
        "fallback_keys": {"signed_curve25519:fb": {"key": 5}},
    }
    assert_error(api.post("keys/upload", device.user, json=body), 400, "M_BAD_JSON")
    body["fallback_keys"] = {
        "signed_curve25519:a": device.otk(True),
        "signed_curve25519:b": device.otk(True),
    }
    assert_error(api.post("keys/upload", device.user, json=body), 400, "M_INVALID_PARAM")
    assert counts(api, device) == {ALG: 0}


@pytest.mark.parametrize(
    "otks",
    [
        {"nocolon": {"key": "x", "signatures": {}}},
        {"signed_curve25519:": {"key": "x", "signatures": {}}},
        {":id": {"key": "x", "signatures": {}}},
        {"signed_curve25519:a": {"signatures": {}}},
        {"signed_curve25519:a": {"key": "x"}},
        {"signed_curve25519:a": 7},
        {"signed_curve25519:a": ["x"]},
    ],
)
def test_malformed_one_time_keys(api: Api, otks: dict[str, Any]) -> None:
    device = new_device(api.register())
    response = api.post("keys/upload", device.user, json={"one_time_keys": otks})
    assert_error(response, 400, "M_BAD_JSON")


def test_one_time_key_cap(limits_server: ServerHandle) -> None:
    with Api(limits_server.base_url) as api:
        device = new_device(api.register())
        # More than the cap in one request.
        response = api.post("keys/upload", device.user, json={"one_time_keys": device.otks(11)})
        assert_error(response, 400, "M_LIMIT_EXCEEDED")
        assert upload(api, device, one_time_keys=device.otks(8))["one_time_key_counts"][ALG] == 8
        # Over the cap together with what is stored: refused, nothing stored.
        more = device.otks(3, prefix="more")
        response = api.post("keys/upload", device.user, json={"one_time_keys": more})
        body = assert_error(response, 400, "M_LIMIT_EXCEEDED")
        assert "retry_after_ms" not in body
        assert counts(api, device) == {ALG: 8}
        # Other algorithms have their own allowance.
        plain = {f"curve25519:p{i}": "AAAA" for i in range(10)}
        assert upload(api, device, one_time_keys=plain)["one_time_key_counts"] == {
            ALG: 8,
            "curve25519": 10,
        }
        # Once keys are claimed there is room again.
        wanted = {device.user.user_id: {device.device_id: ALG}}
        for _ in range(2):
            claim(api, device, wanted)
        assert upload(api, device, one_time_keys=more)["one_time_key_counts"][ALG] == 9


# -- query ----------------------------------------------------------------------------------


def test_query_unknown_and_remote_users(api: Api) -> None:
    device = setup_device(api)
    result = query(
        api,
        device,
        {
            "@nobody-here:localhost": [],
            "@alice:remote.example": [],
            "@bob:other.example:8448": ["DEV"],
            device.user.user_id: [],
        },
    )
    assert set(result["device_keys"]) == {device.user.user_id}
    assert set(result["failures"]) == {"remote.example", "other.example:8448"}
    response = api.post("keys/query", device.user, json={"device_keys": {"not-a-user": []}})
    assert_error(response, 400, "M_INVALID_PARAM")
    response = api.post("keys/query", device.user, json={"device_keys": {"@a:b": "x"}})
    assert_error(response, 400, "M_BAD_JSON")
    assert_error(api.post("keys/query", device.user, json={}), 400, "M_MISSING_PARAM")


def test_query_user_with_no_keys_is_empty(api: Api) -> None:
    device = setup_device(api)
    bare = api.register()
    result = query(api, device, {bare.user_id: []})
    assert result["device_keys"] == {bare.user_id: {}}


def test_deleted_device_disappears_from_query(api: Api) -> None:
    device = setup_device(api, otks=2)
    other = setup_device(api, user=api.login(device.user))
    user_id = device.user.user_id
    first = api.post("delete_devices", device.user, json={"devices": [other.device_id]})
    session = first.json()["session"]
    auth = api.password_auth(device.user, session)
    response = api.post(
        "delete_devices", device.user, json={"devices": [other.device_id], "auth": auth}
    )
    assert response.status_code == 200, response.text
    assert set(query(api, device, {user_id: []})["device_keys"][user_id]) == {device.device_id}


# -- claim ----------------------------------------------------------------------------------


def test_claim_hands_out_each_key_once_then_the_fallback(api: Api) -> None:
    target = new_device(api.register())
    otks = target.otks(3)
    fallback = target.otk(fallback=True)
    upload(api, target, one_time_keys=otks, fallback_keys={"signed_curve25519:fb": fallback})
    claimer = new_device(api.register())
    wanted = {target.user.user_id: {target.device_id: ALG}}

    got: dict[str, Any] = {}
    for _ in range(3):
        keys = claim(api, claimer, wanted)["one_time_keys"][target.user.user_id][target.device_id]
        assert len(keys) == 1
        got.update(keys)
    assert got == otks
    assert counts(api, target) == {ALG: 0}
    for _ in range(2):  # the fallback key is not used up
        result = claim(api, claimer, wanted)
        assert result == {
            "one_time_keys": {
                target.user.user_id: {target.device_id: {"signed_curve25519:fb": fallback}}
            },
            "failures": {},
        }
        assert fallback["fallback"] is True


def test_new_fallback_key_replaces_the_old(api: Api) -> None:
    target = new_device(api.register())
    upload(api, target, fallback_keys={"signed_curve25519:old": target.otk(True)})
    new = target.otk(True)
    upload(api, target, fallback_keys={"signed_curve25519:new": new})
    wanted = {target.user.user_id: {target.device_id: ALG}}
    keys = claim(api, target, wanted)["one_time_keys"][target.user.user_id][target.device_id]
    assert keys == {"signed_curve25519:new": new}


def test_claim_many_devices_unknown_and_remote(api: Api) -> None:
    a = setup_device(api, otks=2)
    b = setup_device(api, otks=1)
    empty = setup_device(api)
    result = claim(
        api,
        a,
        {
            a.user.user_id: {a.device_id: ALG, "NOSUCHDEVICE": ALG},
            b.user.user_id: {b.device_id: ALG},
            empty.user.user_id: {empty.device_id: ALG},
            "@ghost:localhost": {"X": ALG},
            "@carol:remote.example": {"Y": ALG},
        },
    )
    assert set(result["one_time_keys"]) == {a.user.user_id, b.user.user_id}
    assert list(result["one_time_keys"][a.user.user_id]) == [a.device_id]
    assert list(result["one_time_keys"][b.user.user_id]) == [b.device_id]
    assert list(result["failures"]) == ["remote.example"]
    # Only the wanted algorithm.
    assert claim(api, a, {b.user.user_id: {b.device_id: "curve25519"}})["one_time_keys"] == {}
    response = api.post("keys/claim", a.user, json={"one_time_keys": {a.user.user_id: [1]}})
    assert_error(response, 400, "M_BAD_JSON")


def test_claim_is_rate_limited(api: Api) -> None:
    device = new_device(api.register())
    wanted = {device.user.user_id: {device.device_id: ALG}}
    for _ in range(200):
        response = api.post("keys/claim", device.user, json={"one_time_keys": wanted})
        if response.status_code == 429:
            break
        assert response.status_code == 200
    body = assert_error(response, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0
    # Per user: somebody else can still claim.
    other = new_device(api.register())
    assert api.post("keys/claim", other.user, json={"one_time_keys": wanted}).status_code == 200


def test_concurrent_claims_never_share_a_key(limits_server: ServerHandle) -> None:
    n_keys, n_claims = 10, 40
    with Api(limits_server.base_url) as api:
        target = new_device(api.register())
        otks = target.otks(n_keys)
        fallback = target.otk(fallback=True)
        upload(api, target, one_time_keys=otks, fallback_keys={"signed_curve25519:fb": fallback})
        claimers = [api.register() for _ in range(4)]
    wanted = {target.user.user_id: {target.device_id: ALG}}

    async def run() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=n_claims)
        async with httpx.AsyncClient(base_url=limits_server.base_url, limits=limits) as http:

            async def one(i: int) -> dict[str, Any]:
                token = claimers[i % len(claimers)].access_token
                response = await http.post(
                    f"{CLIENT}/keys/claim",
                    json={"one_time_keys": wanted},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 200, response.text
                return response.json()["one_time_keys"][target.user.user_id][target.device_id]

            return await asyncio.gather(*(one(i) for i in range(n_claims)))

    results = asyncio.run(run())
    handed_out = [key_id for r in results for key_id in r if key_id != "signed_curve25519:fb"]
    assert sorted(handed_out) == sorted(otks)  # each key exactly once
    assert sum(1 for r in results if "signed_curve25519:fb" in r) == n_claims - n_keys
    for r in results:
        for key_id, key in r.items():
            assert key == (fallback if key_id == "signed_curve25519:fb" else otks[key_id])
