"""/keys/device_signing/upload, /keys/signatures/upload and what /keys/query shows of them."""

from __future__ import annotations

import copy
from typing import Any

from signedjson.sign import sign_json

from tests.e2e_keys import (
    CrossSigning,
    Device,
    new_cross_signing,
    public_key,
    setup_device,
    signing_key,
)
from tests.helpers import Api, User, assert_error

UPLOAD = "keys/device_signing/upload"


def upload_signing(api: Api, user: User, body: dict[str, Any]) -> Any:
    return api.post(UPLOAD, user, json=body)


def setup_cross_signing(api: Api, device: Device) -> CrossSigning:
    cs = new_cross_signing(device.user.user_id)
    response = upload_signing(api, device.user, cs.body())
    assert response.status_code == 200, response.text
    return cs


def query(api: Api, user: User, users: list[str]) -> dict[str, Any]:
    response = api.post("keys/query", user, json={"device_keys": {u: [] for u in users}})
    assert response.status_code == 200, response.text
    return response.json()


def sign_upload(api: Api, user: User, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("keys/signatures/upload", user, json=body)
    assert response.status_code == 200, response.text
    return response.json()["failures"]


def with_uia(api: Api, user: User, body: dict[str, Any]) -> Any:
    first = upload_signing(api, user, body)
    assert first.status_code == 401, first.text
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    return upload_signing(
        api, user, {**body, "auth": api.password_auth(user, first.json()["session"])}
    )


# -- /keys/device_signing/upload ------------------------------------------------------------


def test_first_upload_needs_no_uia_and_is_shown_in_query(api: Api) -> None:
    alice = setup_device(api)
    cs = setup_cross_signing(api, alice)
    bob = api.register()
    uid = alice.user.user_id

    own = query(api, alice.user, [uid])
    assert own["master_keys"] == {uid: cs.obj(cs.master, "master")}
    assert own["self_signing_keys"] == {uid: cs.obj(cs.self_signing, "self_signing")}
    assert own["user_signing_keys"] == {uid: cs.obj(cs.user_signing, "user_signing")}

    theirs = query(api, bob, [uid])
    assert theirs["master_keys"] == own["master_keys"]
    assert theirs["self_signing_keys"] == own["self_signing_keys"]
    assert theirs.get("user_signing_keys", {}) == {}  # only for the key owner


def test_repeating_the_stored_keys_needs_no_uia(api: Api) -> None:
    alice = setup_device(api)
    cs = setup_cross_signing(api, alice)
    assert upload_signing(api, alice.user, cs.body()).status_code == 200
    assert upload_signing(api, alice.user, cs.body(usk=False)).status_code == 200
    # Without the master key in the request the spec's exception does not apply.
    response = upload_signing(api, alice.user, cs.body(master=False))
    assert response.status_code == 401


def test_replacing_keys_needs_uia(api: Api) -> None:
    alice = setup_device(api)
    setup_cross_signing(api, alice)
    uid = alice.user.user_id
    new = new_cross_signing(uid)
    # A wrong password is refused and changes nothing.
    first = upload_signing(api, alice.user, new.body())
    auth = api.password_auth(alice.user, first.json()["session"])
    auth["password"] = "wrong"
    response = upload_signing(api, alice.user, {**new.body(), "auth": auth})
    assert_error(response, 401, "M_FORBIDDEN")
    assert (
        query(api, alice.user, [uid])["master_keys"][uid]["keys"]
        != new.obj(new.master, "master")["keys"]
    )

    assert with_uia(api, alice.user, new.body()).status_code == 200
    assert query(api, alice.user, [uid])["master_keys"] == {uid: new.obj(new.master, "master")}


def test_new_self_signing_key_signed_by_stored_master(api: Api) -> None:
    alice = setup_device(api)
    cs = setup_cross_signing(api, alice)
    uid = alice.user.user_id
    cs.self_signing = signing_key()
    assert with_uia(api, alice.user, cs.body(master=False, usk=False)).status_code == 200
    assert query(api, alice.user, [uid])["self_signing_keys"][uid] == cs.obj(
        cs.self_signing, "self_signing"
    )
    # Signed by some other key: refused.
    other = new_cross_signing(uid)
    body = {"self_signing_key": other.obj(other.self_signing, "self_signing")}
    assert_error(upload_signing(api, alice.user, body), 400, "M_INVALID_SIGNATURE")


def test_bad_signature_or_no_master_key(api: Api) -> None:
    alice = setup_device(api)
    uid = alice.user.user_id
    cs = new_cross_signing(uid)
    assert_error(upload_signing(api, alice.user, cs.body(master=False)), 400, "M_MISSING_PARAM")
    body = cs.body()
    body["user_signing_key"]["signatures"][uid] = {
        f"ed25519:{public_key(cs.master)}": "AAAA" + "A" * 82
    }
    assert_error(upload_signing(api, alice.user, body), 400, "M_INVALID_SIGNATURE")
    # Unsigned self-signing key.
    body = cs.body()
    del body["self_signing_key"]["signatures"]
    assert_error(upload_signing(api, alice.user, body), 400, "M_INVALID_SIGNATURE")
    # Nothing was stored: the master key of those requests is not there.
    result = query(api, alice.user, [uid])
    assert result["master_keys"] == {} and result["self_signing_keys"] == {}


def test_malformed_keys(api: Api) -> None:
    alice = setup_device(api)
    uid = alice.user.user_id
    cs = new_cross_signing(uid)

    def check(mutate: Any, errcode: str = "M_INVALID_PARAM") -> None:
        body = copy.deepcopy(cs.body())
        mutate(body)
        assert_error(upload_signing(api, alice.user, body), 400, errcode)

    check(lambda b: b["master_key"].update(user_id="@someone:localhost"))
    check(lambda b: b["master_key"].update(usage=["self_signing"]))
    check(lambda b: b["self_signing_key"].update(usage=["master"]))
    check(lambda b: b["master_key"]["keys"].update({"ed25519:abc": "abc"}))
    check(lambda b: b["master_key"].update(keys={}))
    check(lambda b: b["master_key"].update(keys={"ed25519:abc": "abc"}))
    check(lambda b: b["master_key"].update(keys={"curve25519:abc": "abc"}))
    check(lambda b: b["master_key"].update(signatures=[]))
    check(lambda b: b.update(master_key=[]), "M_BAD_JSON")
    check(lambda b: b["master_key"].pop("usage"))
    assert query(api, alice.user, [uid])["master_keys"] == {}


def test_key_equal_to_a_device_id_is_forbidden(api: Api) -> None:
    alice = setup_device(api)
    cs = new_cross_signing(alice.user.user_id)
    api.login(alice.user, device_id=public_key(cs.self_signing))
    assert_error(upload_signing(api, alice.user, cs.body()), 403, "M_FORBIDDEN")


def test_empty_request_is_a_no_op(api: Api) -> None:
    alice = setup_device(api)
    assert upload_signing(api, alice.user, {}).status_code == 200
    setup_cross_signing(api, alice)
    assert upload_signing(api, alice.user, {}).status_code == 200


# -- /keys/signatures/upload ----------------------------------------------------------------


def signed_device(device: Device, cs: CrossSigning) -> dict[str, Any]:
    """The device's stored keys, signed by the self-signing key."""
    obj = device.stored_keys
    assert obj is not None
    return sign_json(copy.deepcopy(obj), device.user.user_id, cs.self_signing)


def setup_signed_user(api: Api) -> tuple[Device, CrossSigning]:
    device = setup_device(api)
    return device, setup_cross_signing(api, device)


def test_self_signing_a_device(api: Api) -> None:
    alice, cs = setup_signed_user(api)
    uid, did = alice.user.user_id, alice.device_id
    failures = sign_upload(api, alice.user, {uid: {did: signed_device(alice, cs)}})
    assert failures == {}
    bob = api.register()
    got = query(api, bob, [uid])["device_keys"][uid][did]
    ssk_id = f"ed25519:{public_key(cs.self_signing)}"
    assert ssk_id in got["signatures"][uid]
    assert f"ed25519:{did}" in got["signatures"][uid]  # the device's own signature is kept
    assert got["unsigned"] == {}


def test_bad_and_unknown_signatures(api: Api) -> None:
    alice, cs = setup_signed_user(api)
    uid, did = alice.user.user_id, alice.device_id
    other = setup_device(api, user=api.login(alice.user))

    forged = signed_device(alice, new_cross_signing(uid))  # by a key that is not Alice's SSK
    ssk_id = f"ed25519:{public_key(cs.self_signing)}"
    wrong = signed_device(alice, cs)
    wrong["signatures"][uid][ssk_id] = forged["signatures"][uid][
        next(k for k in forged["signatures"][uid] if k != f"ed25519:{did}")
    ]
    changed = sign_json(
        {**copy.deepcopy(alice.stored_keys), "algorithms": ["x"], "signatures": {}},
        uid,
        cs.self_signing,
    )
    failures = sign_upload(
        api,
        alice.user,
        {
            uid: {
                did: wrong,
                "NOSUCHDEVICE": {**wrong, "device_id": "NOSUCHDEVICE"},
                other.device_id: changed,
            }
        },
    )
    assert failures[uid][did]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[uid]["NOSUCHDEVICE"]["errcode"] == "M_NOT_FOUND"
    assert failures[uid][other.device_id]["errcode"] in ("M_UNKNOWN", "M_INVALID_SIGNATURE")
    # Signed by something other than the self-signing key.
    failures = sign_upload(api, alice.user, {uid: {did: forged}})
    assert failures[uid][did]["errcode"] == "M_INVALID_SIGNATURE"
    got = query(api, alice.user, [uid])["device_keys"][uid][did]
    assert list(got["signatures"][uid]) == [f"ed25519:{did}"]


def test_device_signs_own_master_key(api: Api) -> None:
    alice, cs = setup_signed_user(api)
    uid, did = alice.user.user_id, alice.device_id
    master = cs.obj(cs.master, "master")
    master_pub = public_key(cs.master)
    assert (
        sign_upload(api, alice.user, {uid: {master_pub: sign_json(master, uid, alice.key)}}) == {}
    )
    bob = api.register()
    shown = query(api, bob, [uid])["master_keys"][uid]
    assert f"ed25519:{did}" in shown["signatures"][uid]
    # A signature by a key that is not one of the devices.
    forged = sign_json(cs.obj(cs.master, "master"), uid, signing_key())
    failures = sign_upload(api, alice.user, {uid: {master_pub: forged}})
    assert failures[uid][master_pub]["errcode"] == "M_INVALID_SIGNATURE"


def test_user_signing_signature_is_only_visible_to_the_signer(api: Api) -> None:
    alice, alice_cs = setup_signed_user(api)
    bob, bob_cs = setup_signed_user(api)
    carol = api.register()
    bob_id = bob.user.user_id
    bob_master = bob_cs.obj(bob_cs.master, "master")
    signed = sign_json(copy.deepcopy(bob_master), alice.user.user_id, alice_cs.user_signing)
    failures = sign_upload(api, alice.user, {bob_id: {public_key(bob_cs.master): signed}})
    assert failures == {}
    usk_id = f"ed25519:{public_key(alice_cs.user_signing)}"
    seen_by_alice = query(api, alice.user, [bob_id])["master_keys"][bob_id]
    assert seen_by_alice["signatures"][alice.user.user_id] == {
        usk_id: signed["signatures"][alice.user.user_id][usk_id]
    }
    assert query(api, bob.user, [bob_id])["master_keys"][bob_id] == bob_master
    assert query(api, carol, [bob_id])["master_keys"][bob_id] == bob_master


def test_signing_other_users_wrong_targets(api: Api) -> None:
    alice, alice_cs = setup_signed_user(api)
    bob, bob_cs = setup_signed_user(api)
    nokeys = api.register()
    bob_id = bob.user.user_id
    bob_master = bob_cs.obj(bob_cs.master, "master")
    bad = sign_json(copy.deepcopy(bob_master), alice.user.user_id, signing_key())
    good = sign_json(copy.deepcopy(bob_master), alice.user.user_id, alice_cs.user_signing)
    failures = sign_upload(
        api,
        alice.user,
        {
            bob_id: {public_key(bob_cs.master): bad, bob.device_id: good},
            nokeys.user_id: {"whatever": good},
            "@dan:remote.example": {"whatever": good},
        },
    )
    assert failures[bob_id][public_key(bob_cs.master)]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[bob_id][bob.device_id]["errcode"] == "M_NOT_FOUND"
    assert failures[nokeys.user_id]["whatever"]["errcode"] == "M_NOT_FOUND"
    assert failures["@dan:remote.example"]["whatever"]["errcode"] == "M_NOT_FOUND"
    # A user without a user-signing key cannot sign others.
    failures = sign_upload(api, nokeys, {bob_id: {public_key(bob_cs.master): good}})
    assert failures[bob_id][public_key(bob_cs.master)]["errcode"] == "M_NOT_FOUND"
    assert_error(
        api.post("keys/signatures/upload", alice.user, json={"x": {}}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        api.post("keys/signatures/upload", alice.user, json={bob_id: {"k": 1}}), 400, "M_BAD_JSON"
    )


def test_login_cannot_take_a_cross_signing_key_id(api: Api) -> None:
    user = api.register()
    keys = new_cross_signing(user.user_id)
    assert api.post("keys/device_signing/upload", user, json=keys.body()).status_code == 200
    master_id = public_key(keys.master)
    response = api.post("login", json={
        "type": "m.login.password", "user": user.localpart, "password": user.password,
        "device_id": master_id})
    assert_error(response, 400, "M_INVALID_PARAM")
