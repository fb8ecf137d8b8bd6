"""device_lists, key counts and /keys/changes through /sync."""

import threading
import time

from tests.e2e_keys import new_cross_signing, new_device, setup_device, upload
from tests.helpers import Api, User, assert_error


def share_room(api: Api, alice: User, bob: User) -> str:
    room_id = api.post("createRoom", alice, json={"invite": [bob.user_id]}).json()["room_id"]
    assert api.post(f"rooms/{room_id}/join", bob).status_code == 200
    return room_id


def lists(api: Api, user: User, since: str) -> tuple[dict, str]:
    body = api.get("sync", user, params={"since": since}).json()
    return body["device_lists"], body["next_batch"]


def test_room_mate_sees_changes(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    share_room(api, alice, bob)
    since = api.get("sync", alice).json()["next_batch"]

    device = setup_device(api, bob)  # device keys upload
    changed, since = lists(api, alice, since)
    assert changed["changed"] == [bob.user_id]

    bob2 = api.login(bob)  # a new device
    changed, since = lists(api, alice, since)
    assert bob.user_id in changed["changed"]

    session = api.delete(f"devices/{bob2.device_id}", bob).json()["session"]
    api.delete(f"devices/{bob2.device_id}", bob, json={"auth": api.password_auth(bob, session)})
    changed, since = lists(api, alice, since)
    assert bob.user_id in changed["changed"]

    keys = new_cross_signing(bob.user_id)
    assert api.post("keys/device_signing/upload", bob, json=keys.body()).status_code == 200
    changed, since = lists(api, alice, since)
    assert bob.user_id in changed["changed"]

    quiet, since = lists(api, alice, since)
    assert quiet == {"changed": [], "left": []}
    assert device.device_id == bob.device_id


def test_strangers_do_not_see_changes(api: Api) -> None:
    alice = api.register()
    stranger = api.register()
    since = api.get("sync", alice).json()["next_batch"]
    setup_device(api, stranger)
    changed, _ = lists(api, alice, since)
    assert stranger.user_id not in changed["changed"]


def test_new_room_mate_is_changed_and_left_after_last_room(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", alice).json()["next_batch"]
    room_id = share_room(api, alice, bob)
    changed, since = lists(api, alice, since)
    assert bob.user_id in changed["changed"]
    api.post(f"rooms/{room_id}/leave", bob)
    changed, since2 = lists(api, alice, since)
    assert changed["left"] == [bob.user_id]
    # /keys/changes answers the same question between the same tokens.
    response = api.get("keys/changes", alice, params={"from": since, "to": since2})
    assert response.json()["left"] == [bob.user_id]


def test_left_only_when_no_room_is_shared(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    first = share_room(api, alice, bob)
    share_room(api, alice, bob)
    since = api.get("sync", alice).json()["next_batch"]
    api.post(f"rooms/{first}/leave", bob)
    changed, _ = lists(api, alice, since)
    assert bob.user_id not in changed["left"]


def test_keys_changes_matches_sync(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    share_room(api, alice, bob)
    start = api.get("sync", alice).json()["next_batch"]
    setup_device(api, bob)
    changed, end = lists(api, alice, start)
    response = api.get("keys/changes", alice, params={"from": start, "to": end})
    assert response.status_code == 200
    assert response.json() == changed
    assert_error(api.get("keys/changes", alice, params={"from": start}), 400, "M_MISSING_PARAM")
    assert_error(api.get("keys/changes", alice, params={"from": "x", "to": end}), 400,
                 "M_INVALID_PARAM")
    assert_error(api.get("keys/changes", alice, params={"from": end, "to": start}), 400,
                 "M_INVALID_PARAM")


def test_one_time_key_counts_and_fallback_types(api: Api) -> None:
    bob = api.register()
    first = api.get("sync", bob).json()
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert first["device_unused_fallback_key_types"] == []
    device = setup_device(api, bob, otks=2, fallback=True)
    body = api.get("sync", bob).json()
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 2
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claimer = api.register()
    for _ in range(3):  # two one-time keys, then the fallback key
        api.post("keys/claim", claimer, json={
            "one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
    body = api.get("sync", bob).json()
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 0
    assert body["device_unused_fallback_key_types"] == []
    upload(api, device, fallback_keys={"signed_curve25519:fb2": device.otk(fallback=True)})
    body = api.get("sync", bob).json()
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]


def test_key_upload_wakes_room_mates_sync(api: Api, server) -> None:
    alice = api.register()
    bob = api.register()
    share_room(api, alice, bob)
    since = api.get("sync", alice).json()["next_batch"]

    def later() -> None:
        time.sleep(0.3)
        with Api(server.base_url) as other:
            device = new_device(bob)
            upload(other, device, device_keys=device.device_keys())

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    body = api.get("sync", alice, params={"since": since, "timeout": "20000"}).json()
    thread.join()
    assert time.monotonic() - started < 10
    assert body["device_lists"]["changed"] == [bob.user_id]
