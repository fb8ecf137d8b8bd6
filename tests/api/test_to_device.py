import threading
import time

from tests.helpers import Api, assert_error


def send(api: Api, user, txn: str, messages, event_type: str = "m.test"):
    return api.put(f"sendToDevice/{event_type}/{txn}", user, json={"messages": messages})


def to_device(body) -> list[dict]:
    return body["to_device"]["events"]


def test_delivery_once_in_order_and_retried_since(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]
    for i in range(3):
        assert send(api, alice, f"t{i}", {bob.user_id: {bob.device_id: {"n": i}}}).json() == {}
    first = api.get("sync", bob, params={"since": since}).json()
    events = to_device(first)
    assert [e["content"]["n"] for e in events] == [0, 1, 2]
    assert all(e["sender"] == alice.user_id and e["type"] == "m.test" for e in events)
    # Retrying the same `since` gets them again (not acknowledged yet).
    again = api.get("sync", bob, params={"since": since}).json()
    assert [e["content"]["n"] for e in to_device(again)] == [0, 1, 2]
    # Syncing past them acknowledges and deletes them.
    after = api.get("sync", bob, params={"since": first["next_batch"]}).json()
    assert to_device(after) == []
    later = api.get("sync", bob, params={"since": after["next_batch"]}).json()
    assert to_device(later) == []


def test_transaction_retry_not_duplicated(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]
    for _ in range(3):
        assert send(api, alice, "same", {bob.user_id: {bob.device_id: {"x": 1}}}).status_code == 200
    assert len(to_device(api.get("sync", bob, params={"since": since}).json())) == 1
    # The same transaction ID from another device of the sender is a new request.
    other = api.login(alice)
    send(api, other, "same", {bob.user_id: {bob.device_id: {"x": 2}}})
    assert len(to_device(api.get("sync", bob, params={"since": since}).json())) == 2


def test_star_reaches_every_device_and_unknown_dropped(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    bob2 = api.login(bob)
    syncs = {d.device_id: api.get("sync", d).json()["next_batch"] for d in (bob, bob2)}
    response = send(api, alice, "s", {
        bob.user_id: {"*": {"hello": True}},
        "@nobody:localhost": {"X": {}},
        "@remote:elsewhere.example": {"Y": {}},
    })
    assert response.status_code == 200
    send(api, alice, "u", {bob.user_id: {"NOSUCHDEVICE": {"x": 1}}})
    for device in (bob, bob2):
        body = api.get("sync", device, params={"since": syncs[device.device_id]}).json()
        assert [e["content"] for e in to_device(body)] == [{"hello": True}]


def test_cap_and_remainder_return_at_once(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]
    for batch in range(3):
        messages = {bob.user_id: {bob.device_id: {"n": batch}}}
        for i in range(50):
            send(api, alice, f"b{batch}-{i}", messages)
    first = api.get("sync", bob, params={"since": since}).json()
    assert len(to_device(first)) == 100
    started = time.monotonic()
    second = api.get("sync", bob, params={"since": first["next_batch"], "timeout": "20000"}
                     ).json()
    assert time.monotonic() - started < 5
    assert len(to_device(second)) == 50
    third = api.get("sync", bob, params={"since": second["next_batch"]}).json()
    assert to_device(third) == []


def test_deleting_device_deletes_queue(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    bob2 = api.login(bob)
    send(api, alice, "q", {bob.user_id: {bob2.device_id: {"x": 1}}})
    session = api.delete(f"devices/{bob2.device_id}", bob).json()["session"]
    api.delete(f"devices/{bob2.device_id}", bob, json={"auth": api.password_auth(bob, session)})
    # Re-using the device ID gives an empty inbox.
    again = api.login(bob, device_id=bob2.device_id)
    assert to_device(api.get("sync", again).json()) == []


def test_long_poll_wakes_on_to_device(api: Api, server) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]

    def later() -> None:
        time.sleep(0.3)
        with Api(server.base_url) as other:
            send(other, alice, "late", {bob.user_id: {bob.device_id: {"late": True}}})

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    body = api.get("sync", bob, params={"since": since, "timeout": "30000"}).json()
    thread.join()
    assert time.monotonic() - started < 10
    assert [e["content"] for e in to_device(body)] == [{"late": True}]


def test_bad_bodies(api: Api) -> None:
    alice = api.register()
    assert_error(api.put("sendToDevice/m.test/1", alice, json={}), 400, "M_MISSING_PARAM")
    assert_error(api.put("sendToDevice/m.test/2", alice, json={"messages": {"@a:b": []}}), 400,
                 "M_BAD_JSON")
    assert_error(api.put("sendToDevice/m.test/3", alice,
                         json={"messages": {"@a:b": {"D": "text"}}}), 400, "M_BAD_JSON")
    assert_error(send(api, alice, "4", {"not-a-user": {"D": {}}}), 400, "M_INVALID_PARAM")
    assert_error(api.put("sendToDevice/m.test/5", None, json={"messages": {}}), 401,
                 "M_MISSING_TOKEN")


def test_acknowledged_messages_are_deleted(api: Api, server) -> None:
    import asyncio

    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]
    send(api, alice, "del", {bob.user_id: {bob.device_id: {"x": 1}}})
    first = api.get("sync", bob, params={"since": since}).json()
    api.get("sync", bob, params={"since": first["next_batch"]})
    store = server.homeserver.storage.to_device
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, found = asyncio.run(store.pending_many([(bob.user_id, bob.device_id, 0)], 10))
        left = found[(bob.user_id, bob.device_id)][0]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
