import logging
import socket
import threading
import time
from urllib.parse import urlsplit

from tests.helpers import CLIENT, Api, User, assert_error


def create_room(api: Api, user: User, **body) -> str:
    response = api.post("createRoom", user, json=body)
    assert response.status_code == 200, response.text
    return response.json()["room_id"]


def test_initial_sync_has_room(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice, name="R",
                          initial_state=[{"type": "m.room.encryption",
                                          "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    body = api.get("sync", alice).json()
    room = body["rooms"]["join"][room_id]
    state_types = {e["type"] for e in room["state"]["events"]} | {
        e["type"] for e in room["timeline"]["events"]}
    assert {"m.room.create", "m.room.encryption", "m.room.name"} <= state_types
    assert room["summary"]["m.joined_member_count"] == 1
    assert isinstance(body["next_batch"], str)
    assert "prev_batch" in room["timeline"]


def test_incremental_sync_and_limited_timeline(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    since = api.get("sync", alice).json()["next_batch"]
    empty = api.get("sync", alice, params={"since": since}).json()
    assert room_id not in empty["rooms"]["join"]
    for i in range(3):
        api.put(f"rooms/{room_id}/send/m.room.message/a{i}", alice, json={"body": str(i)})
    body = api.get("sync", alice, params={"since": since}).json()
    timeline = body["rooms"]["join"][room_id]["timeline"]
    assert [e["content"]["body"] for e in timeline["events"]] == ["0", "1", "2"]
    assert timeline["limited"] is False
    assert timeline["events"][0]["unsigned"]["transaction_id"] == "a0"
    since = body["next_batch"]
    api.put(f"rooms/{room_id}/state/m.room.topic", alice, json={"topic": "t"})
    for i in range(5):
        api.put(f"rooms/{room_id}/send/m.room.message/b{i}", alice, json={"body": str(i)})
    limited = api.get("sync", alice, params={
        "since": since, "filter": '{"room": {"timeline": {"limit": 2}}}'}).json()
    room = limited["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert len(room["timeline"]["events"]) == 2
    # The topic changed in the gap: it comes as state.
    assert [e["type"] for e in room["state"]["events"]] == ["m.room.topic"]
    prev = room["timeline"]["prev_batch"]
    older = api.get(f"rooms/{room_id}/messages", alice,
                    params={"from": prev, "dir": "b", "limit": 3}).json()
    assert [e["content"]["body"] for e in older["chunk"]] == ["2", "1", "0"]


def test_invite_and_leave_sections(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    since = api.get("sync", bob).json()["next_batch"]
    room_id = create_room(api, alice, name="Invite me", invite=[bob.user_id])
    body = api.get("sync", bob, params={"since": since}).json()
    invite = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {e["type"] for e in invite} >= {"m.room.create", "m.room.name", "m.room.member"}
    since = body["next_batch"]
    api.post(f"rooms/{room_id}/join", bob)
    body = api.get("sync", bob, params={"since": since}).json()
    joined = body["rooms"]["join"][room_id]
    assert any(e["type"] == "m.room.create" for e in joined["state"]["events"] +
               joined["timeline"]["events"])
    since = body["next_batch"]
    api.post(f"rooms/{room_id}/kick", alice, json={"user_id": bob.user_id})
    body = api.get("sync", bob, params={"since": since}).json()
    assert room_id in body["rooms"]["leave"]
    assert room_id not in body["rooms"]["join"]


def test_long_poll_wakes_on_event(api: Api, server) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    since = api.get("sync", alice).json()["next_batch"]

    def send_later() -> None:
        time.sleep(0.3)
        with Api(server.base_url) as other:
            other.put(f"rooms/{room_id}/send/m.room.message/late", alice, json={"body": "late"})

    thread = threading.Thread(target=send_later)
    thread.start()
    started = time.monotonic()
    body = api.get("sync", alice, params={"since": since, "timeout": "30000"}).json()
    elapsed = time.monotonic() - started
    thread.join()
    assert elapsed < 10, elapsed
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["late"]


def test_long_poll_times_out_without_news(api: Api) -> None:
    alice = api.register()
    since = api.get("sync", alice).json()["next_batch"]
    started = time.monotonic()
    body = api.get("sync", alice, params={"since": since, "timeout": "300"}).json()
    assert time.monotonic() - started >= 0.25
    assert body["next_batch"] == since


def test_long_poll_ends_when_the_client_disconnects(api: Api, server) -> None:
    """A client that gives up on a long-polling /sync (closed app, lost network, a client
    stopping) must not leave the server waiting out the timeout for nobody: the sync ends at
    once, logged as 499 like Synapse does, and the server can shut down without waiting."""
    alice = api.register()
    since = api.get("sync", alice).json()["next_batch"]
    finished: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            method, route, status, ms, user = record.args  # type: ignore[misc]
            # (Only the long poll: the initial sync's line may be logged after it answered.)
            if route.endswith("/sync") and user == alice.user_id and ms > 400:
                finished.append(f"{method} {status}")

    access = logging.getLogger("mxkeys.access")
    handler, level = Capture(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        url = urlsplit(server.base_url)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(
                f"GET {CLIENT}/sync?since={since}&timeout=30000 HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\nAuthorization: Bearer {alice.access_token}\r\n\r\n"
                .encode()
            )
            time.sleep(0.5)  # the sync is now waiting for news
            assert finished == []
        deadline = time.monotonic() + 5
        while not finished and time.monotonic() < deadline:
            time.sleep(0.02)
        assert finished == ["GET 499"]
    finally:
        access.removeHandler(handler)
        access.setLevel(level)


def test_bad_tokens(api: Api) -> None:
    alice = api.register()
    assert_error(api.get("sync", alice, params={"since": "garbage"}), 400, "M_INVALID_PARAM")
    assert_error(api.get("sync", alice, params={"since": "s999999999_0_0_0"}), 400,
                 "M_INVALID_PARAM")
    assert_error(api.get("sync", alice, params={"timeout": "soon"}), 400, "M_INVALID_PARAM")
    assert_error(api.get("sync", alice, params={"filter": "{bad"}), 400, "M_NOT_JSON")


def test_account_data_in_sync(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    initial = api.get("sync", alice).json()
    types = [e["type"] for e in initial["account_data"]["events"]]
    assert "m.push_rules" in types
    since = initial["next_batch"]
    api.put(f"user/{alice.user_id}/account_data/m.secret_storage.default_key", alice,
            json={"key": "abc"})
    api.put(f"user/{alice.user_id}/rooms/{room_id}/account_data/m.tag", alice,
            json={"tags": {}})
    body = api.get("sync", alice, params={"since": since}).json()
    assert body["account_data"]["events"] == [
        {"type": "m.secret_storage.default_key", "content": {"key": "abc"}}]
    room_data = body["rooms"]["join"][room_id]["account_data"]["events"]
    assert room_data == [{"type": "m.tag", "content": {"tags": {}}}]
    quiet = api.get("sync", alice, params={"since": body["next_batch"]}).json()
    assert quiet["account_data"]["events"] == []


def test_profile_changes_reach_member_events(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    member = api.get(f"rooms/{room_id}/state/m.room.member/{alice.user_id}", alice).json()
    assert member["displayname"] == alice.localpart
    assert api.put(f"profile/{alice.user_id}/displayname", alice,
                   json={"displayname": "Alice A."}).status_code == 200
    member = api.get(f"rooms/{room_id}/state/m.room.member/{alice.user_id}", alice).json()
    assert member == {"membership": "join", "displayname": "Alice A."}
