from urllib.parse import quote

import pytest
from canonicaljson import encode_canonical_json
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from mxkeys.services.event_format import content_hash, redact, reference_hash_event_id
from mxkeys.services.room_versions import ROOM_VERSIONS
from tests.helpers import Api, User, assert_error


def create_room(api: Api, user: User, **body) -> str:
    response = api.post("createRoom", user, json=body)
    assert response.status_code == 200, response.text
    return response.json()["room_id"]


def state_types(api: Api, user: User, room_id: str) -> list[tuple[str, str]]:
    state = api.get(f"rooms/{room_id}/state", user).json()
    return sorted((e["type"], e["state_key"]) for e in state)


def test_create_room_initial_events_in_order(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(
        api, alice, name="Secret", topic="keys", invite=[bob.user_id], is_direct=True,
        initial_state=[{"type": "m.room.encryption",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    )
    events = api.get(f"rooms/{room_id}/messages", alice, params={"dir": "f", "limit": 50}).json()
    order = [(e["type"], e.get("state_key")) for e in events["chunk"]]
    assert order == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("m.room.encryption", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]
    invite = events["chunk"][-1]
    assert invite["content"]["membership"] == "invite"
    assert invite["content"]["is_direct"] is True
    create = events["chunk"][0]
    assert create["content"]["room_version"] == "11"
    join_rules = api.get(f"rooms/{room_id}/state/m.room.join_rules", alice).json()
    assert join_rules == {"join_rule": "invite"}
    levels = api.get(f"rooms/{room_id}/state/m.room.power_levels/", alice).json()
    assert levels["users"] == {alice.user_id: 100}
    assert api.get("joined_rooms", alice).json() == {"joined_rooms": [room_id]}


def test_room_versions(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice, room_version="10")
    create = api.get(f"rooms/{room_id}/state/m.room.create", alice).json()
    assert create == {"room_version": "10", "creator": alice.user_id}
    assert_error(api.post("createRoom", alice, json={"room_version": "3"}), 400,
                 "M_UNSUPPORTED_ROOM_VERSION")
    assert_error(api.post("createRoom", alice, json={"preset": "nope"}), 400, "M_BAD_JSON")
    assert_error(api.post("createRoom", alice, json={"invite": ["bob"]}), 400, "M_INVALID_PARAM")
    assert_error(api.post("createRoom", alice, json={"invite": ["@ghost:localhost"]}), 404,
                 "M_NOT_FOUND")


@pytest.mark.parametrize("version", ["10", "11"])
def test_events_are_signed_federation_events(api: Api, server, version: str) -> None:
    alice = api.register()
    room_id = create_room(api, alice, room_version=version)
    event_id = api.put(f"rooms/{room_id}/send/m.room.message/t1", alice,
                       json={"msgtype": "m.text", "body": "hi"}).json()["event_id"]
    hs = server.homeserver
    stored = hs.db.run_sync(lambda conn: None)  # noqa: F841 - database reachable
    import asyncio

    event = asyncio.run(hs.storage.rooms.get_event(event_id))
    pdu = {k: v for k, v in event.pdu.items() if k != "event_id"}
    room_version = ROOM_VERSIONS[version]
    assert reference_hash_event_id(pdu, room_version) == event_id
    assert pdu["hashes"]["sha256"] == content_hash(pdu)
    key = hs.rooms.signing_key
    verify_key = decode_verify_key_bytes(f"ed25519:{key.version}", key.verify_key.encode())
    verify_signed_json(redact(pdu, room_version), "localhost", verify_key)
    assert pdu["prev_events"] and pdu["auth_events"] and pdu["depth"] > 1
    assert ("origin" in pdu) == (version == "10")
    assert len(encode_canonical_json(pdu)) < 65536


def test_send_idempotent_and_transaction_id(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    first = api.put(f"rooms/{room_id}/send/m.room.message/txn1", alice, json={"body": "a"})
    again = api.put(f"rooms/{room_id}/send/m.room.message/txn1", alice, json={"body": "a"})
    assert first.status_code == 200 and first.json() == again.json()
    other_device = api.login(alice)
    third = api.put(f"rooms/{room_id}/send/m.room.message/txn1", other_device, json={"body": "a"})
    assert third.json()["event_id"] != first.json()["event_id"]
    event = api.get(f"rooms/{room_id}/event/{first.json()['event_id']}", alice).json()
    assert event["unsigned"]["transaction_id"] == "txn1"
    seen_elsewhere = api.get(f"rooms/{room_id}/event/{first.json()['event_id']}",
                             other_device).json()
    assert "transaction_id" not in seen_elsewhere["unsigned"]


def test_non_member_cannot_send_read_or_invite(api: Api) -> None:
    alice = api.register()
    eve = api.register()
    bob = api.register()
    room_id = create_room(api, alice)
    assert_error(api.put(f"rooms/{room_id}/send/m.room.message/1", eve, json={"b": 1}), 403,
                 "M_FORBIDDEN")
    assert_error(api.get(f"rooms/{room_id}/state", eve), 403, "M_FORBIDDEN")
    assert_error(api.get(f"rooms/{room_id}/state/m.room.create", eve), 403, "M_FORBIDDEN")
    assert_error(api.get(f"rooms/{room_id}/messages", eve, params={"dir": "b"}), 403,
                 "M_FORBIDDEN")
    assert_error(api.get(f"rooms/{room_id}/members", eve), 403, "M_FORBIDDEN")
    assert_error(api.post(f"rooms/{room_id}/invite", eve, json={"user_id": bob.user_id}), 403,
                 "M_FORBIDDEN")
    # Private room: joining without an invite is refused.
    assert_error(api.post(f"rooms/{room_id}/join", eve), 403, "M_FORBIDDEN")
    assert_error(api.post("rooms/!nope:localhost/join", eve), 404, "M_NOT_FOUND")


def test_invite_join_leave_flow(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(api, alice)
    assert api.post(f"rooms/{room_id}/invite", alice, json={"user_id": bob.user_id}).json() == {}
    assert api.post(f"join/{quote(room_id)}", bob).json() == {"room_id": room_id}
    joined = api.get(f"rooms/{room_id}/joined_members", bob).json()["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    assert api.put(f"rooms/{room_id}/send/m.room.message/x", bob, json={"body": "hi"}
                   ).status_code == 200
    # Bob (power 0) may not change the name (state_default 50 / m.room.name 50).
    assert_error(api.put(f"rooms/{room_id}/state/m.room.name", bob, json={"name": "x"}), 403,
                 "M_FORBIDDEN")
    assert api.post(f"rooms/{room_id}/leave", bob).json() == {}
    assert api.get("joined_rooms", bob).json() == {"joined_rooms": []}
    # After leaving, history up to the leave stays readable; later events are not.
    api.put(f"rooms/{room_id}/send/m.room.message/later", alice, json={"body": "after"})
    bodies = [e["content"].get("body") for e in api.get(
        f"rooms/{room_id}/messages", bob, params={"dir": "b"}).json()["chunk"]]
    assert "hi" in bodies and "after" not in bodies
    assert_error(api.put(f"rooms/{room_id}/send/m.room.message/y", bob, json={"b": 1}), 403,
                 "M_FORBIDDEN")
    assert api.post(f"rooms/{room_id}/forget", bob).json() == {}


def test_public_room_kick_ban_unban(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(api, alice, preset="public_chat")
    assert api.post(f"rooms/{room_id}/join", bob).status_code == 200
    assert_error(api.post(f"rooms/{room_id}/kick", bob, json={"user_id": alice.user_id}), 403,
                 "M_FORBIDDEN")
    assert api.post(f"rooms/{room_id}/kick", alice, json={"user_id": bob.user_id,
                                                          "reason": "bye"}).json() == {}
    member = api.get(f"rooms/{room_id}/state/m.room.member/{bob.user_id}", alice).json()
    assert member == {"membership": "leave", "reason": "bye"}
    assert api.post(f"rooms/{room_id}/join", bob).status_code == 200
    assert api.post(f"rooms/{room_id}/ban", alice, json={"user_id": bob.user_id}).json() == {}
    assert_error(api.post(f"rooms/{room_id}/join", bob), 403, "M_FORBIDDEN")
    assert_error(api.post(f"rooms/{room_id}/forget", alice), 400, "M_UNKNOWN")
    assert api.post(f"rooms/{room_id}/unban", alice, json={"user_id": bob.user_id}).json() == {}
    assert_error(api.post(f"rooms/{room_id}/unban", alice, json={"user_id": bob.user_id}), 403,
                 "M_FORBIDDEN")
    assert api.post(f"rooms/{room_id}/join", bob).status_code == 200


def test_power_levels_rules(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(api, alice, preset="public_chat")
    api.post(f"rooms/{room_id}/join", bob)
    levels = api.get(f"rooms/{room_id}/state/m.room.power_levels", alice).json()
    levels["users"][bob.user_id] = 50
    assert api.put(f"rooms/{room_id}/state/m.room.power_levels", alice, json=levels
                   ).status_code == 200
    levels["users"][bob.user_id] = 100
    levels["users"][alice.user_id] = 0
    assert_error(api.put(f"rooms/{room_id}/state/m.room.power_levels", bob, json=levels), 403,
                 "M_FORBIDDEN")
    levels["users"] = "nope"
    assert_error(api.put(f"rooms/{room_id}/state/m.room.power_levels", alice, json=levels), 403,
                 "M_FORBIDDEN")
    # A state key that names another user is refused.
    assert_error(api.put(f"rooms/{room_id}/state/com.example/{alice.user_id}", bob, json={}),
                 403, "M_FORBIDDEN")


def test_redaction(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(api, alice, preset="public_chat")
    api.post(f"rooms/{room_id}/join", bob)
    mine = api.put(f"rooms/{room_id}/send/m.room.message/1", bob,
                   json={"body": "oops", "msgtype": "m.text"}).json()["event_id"]
    theirs = api.put(f"rooms/{room_id}/send/m.room.message/2", alice,
                     json={"body": "mine"}).json()["event_id"]
    assert_error(api.put(f"rooms/{room_id}/redact/{theirs}/r1", bob, json={}), 403,
                 "M_FORBIDDEN")
    redaction = api.put(f"rooms/{room_id}/redact/{mine}/r2", bob, json={"reason": "typo"})
    assert redaction.status_code == 200, redaction.text
    event = api.get(f"rooms/{room_id}/event/{mine}", alice).json()
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction.json()["event_id"]
    assert api.put(f"rooms/{room_id}/redact/{theirs}/r3", alice, json={}).status_code == 200
    assert_error(api.put(f"rooms/{room_id}/redact/$nope/r4", alice, json={}), 404,
                 "M_NOT_FOUND")


def test_messages_pagination_and_filter(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    for i in range(15):
        api.put(f"rooms/{room_id}/send/m.room.message/m{i}", alice, json={"body": str(i)})
    api.put(f"rooms/{room_id}/send/com.example.other/o", alice, json={})
    page = api.get(f"rooms/{room_id}/messages", alice,
                   params={"dir": "b", "limit": 5,
                           "filter": '{"types": ["m.room.message"]}'}).json()
    assert [e["content"]["body"] for e in page["chunk"]] == ["14", "13", "12", "11", "10"]
    page2 = api.get(f"rooms/{room_id}/messages", alice,
                    params={"dir": "b", "limit": 5, "from": page["end"],
                            "filter": '{"types": ["m.room.message"]}'}).json()
    assert [e["content"]["body"] for e in page2["chunk"]] == ["9", "8", "7", "6", "5"]
    forward = api.get(f"rooms/{room_id}/messages", alice,
                      params={"dir": "f", "limit": 100}).json()
    assert "end" not in forward
    assert forward["chunk"][-1]["type"] == "com.example.other"
    assert_error(api.get(f"rooms/{room_id}/messages", alice, params={"dir": "x"}), 400,
                 "M_INVALID_PARAM")
    assert_error(api.get(f"rooms/{room_id}/messages", alice, params={"dir": "b",
                                                                      "from": "garbage"}),
                 400, "M_INVALID_PARAM")
    assert_error(api.get(f"rooms/{room_id}/messages", alice, params={"dir": "b",
                                                                      "limit": "many"}),
                 400, "M_INVALID_PARAM")


def test_members(api: Api) -> None:
    alice = api.register()
    bob = api.register()
    room_id = create_room(api, alice, invite=[bob.user_id])
    chunk = api.get(f"rooms/{room_id}/members", alice).json()["chunk"]
    assert {e["state_key"]: e["content"]["membership"] for e in chunk} == {
        alice.user_id: "join", bob.user_id: "invite"}
    joined = api.get(f"rooms/{room_id}/members", alice, params={"membership": "join"}).json()
    assert [e["state_key"] for e in joined["chunk"]] == [alice.user_id]


def test_bad_room_requests(api: Api) -> None:
    alice = api.register()
    room_id = create_room(api, alice)
    assert_error(api.put(f"rooms/{room_id}/send/m.room.message/1", alice, content=b"[]"), 400,
                 "M_BAD_JSON")
    assert_error(api.put(f"rooms/{room_id}/send/m.room.message/1", alice, content=b"{"), 400,
                 "M_NOT_JSON")
    assert_error(api.put("rooms/not-a-room/send/m.room.message/1", alice, json={}), 400,
                 "M_INVALID_PARAM")
    assert_error(api.get(f"rooms/{room_id}/event/$missing", alice), 404, "M_NOT_FOUND")
    assert_error(api.get(f"rooms/{room_id}/state/m.room.name", alice), 404, "M_NOT_FOUND")
    big = {"body": "x" * 70000}
    assert_error(api.put(f"rooms/{room_id}/send/m.room.message/big", alice, json=big), 413,
                 "M_TOO_LARGE")
