"""The v10/v11 authorization rules, on hand-built room states."""

from __future__ import annotations

from typing import Any

import pytest

from mxkeys.services.event_auth import AuthError, StateMap, check, user_power_level
from mxkeys.services.room_versions import ROOM_VERSIONS

V11 = ROOM_VERSIONS["11"]
V10 = ROOM_VERSIONS["10"]
ROOM = "!room:hs"
ALICE, BOB, CAROL = "@alice:hs", "@bob:hs", "@carol:hs"


def ev(event_type: str, sender: str, content: dict[str, Any], state_key: str | None = None,
       event_id: str | None = None, prev: list[str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": event_type, "sender": sender, "content": content,
                             "room_id": ROOM,
                             "prev_events": prev if prev is not None else ["$prev"],
                             "event_id": event_id or f"${event_type}-{state_key}"}
    if state_key is not None:
        event["state_key"] = state_key
    return event


def room(join_rule: str = "invite", members: dict[str, str] | None = None,
         levels: dict[str, Any] | None = None) -> StateMap:
    state: StateMap = {
        ("m.room.create", ""): ev("m.room.create", ALICE, {"room_version": "11"}, "",
                                  "$create", prev=[]),
        ("m.room.join_rules", ""): ev("m.room.join_rules", ALICE, {"join_rule": join_rule}, ""),
        ("m.room.power_levels", ""): ev("m.room.power_levels", ALICE, levels or {
            "users": {ALICE: 100}, "state_default": 50, "events_default": 0, "ban": 50,
            "kick": 50, "invite": 0}, ""),
    }
    for user, membership in (members or {ALICE: "join"}).items():
        state[("m.room.member", user)] = ev("m.room.member", user, {"membership": membership},
                                            user)
    return state


def member(sender: str, target: str, membership: str) -> dict[str, Any]:
    return ev("m.room.member", sender, {"membership": membership}, target)


def test_create_rules() -> None:
    check(ev("m.room.create", ALICE, {"room_version": "11"}, "", prev=[]), {}, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.create", "@alice:other", {}, "", prev=[]), {}, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.create", ALICE, {"room_version": "99"}, "", prev=[]), {}, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.create", ALICE, {}, "", prev=["$x"]), {}, V11)


def test_creator_first_join() -> None:
    state = {("m.room.create", ""): room()[("m.room.create", "")]}
    check(ev("m.room.member", ALICE, {"membership": "join"}, ALICE, prev=["$create"]), state, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.member", BOB, {"membership": "join"}, BOB, prev=["$create"]), state, V11)


def test_joins_by_join_rule() -> None:
    with pytest.raises(AuthError):
        check(member(BOB, BOB, "join"), room("invite"), V11)
    check(member(BOB, BOB, "join"), room("public"), V11)
    check(member(BOB, BOB, "join"), room("invite", {ALICE: "join", BOB: "invite"}), V11)
    with pytest.raises(AuthError):
        check(member(BOB, BOB, "join"), room("public", {ALICE: "join", BOB: "ban"}), V11)
    with pytest.raises(AuthError):
        check(member(ALICE, BOB, "join"), room("public"), V11)


def test_invites() -> None:
    check(member(ALICE, BOB, "invite"), room(), V11)
    with pytest.raises(AuthError):  # inviter not joined
        check(member(CAROL, BOB, "invite"), room(), V11)
    with pytest.raises(AuthError):  # invitee banned
        check(member(ALICE, BOB, "invite"), room(members={ALICE: "join", BOB: "ban"}), V11)
    strict = room(members={ALICE: "join", CAROL: "join"},
                  levels={"users": {ALICE: 100}, "invite": 50})
    with pytest.raises(AuthError):  # power too low
        check(member(CAROL, BOB, "invite"), strict, V11)


def test_leave_kick_ban_unban() -> None:
    state = room(members={ALICE: "join", BOB: "join"})
    check(member(BOB, BOB, "leave"), state, V11)
    check(member(ALICE, BOB, "leave"), state, V11)  # kick
    with pytest.raises(AuthError):
        check(member(BOB, ALICE, "leave"), state, V11)  # lower cannot kick higher
    check(member(ALICE, BOB, "ban"), state, V11)
    banned = room(members={ALICE: "join", BOB: "ban"})
    check(member(ALICE, BOB, "leave"), banned, V11)  # unban
    with pytest.raises(AuthError):
        check(member(BOB, BOB, "leave"), banned, V11)  # a banned user cannot leave
    with pytest.raises(AuthError):
        check(member(ALICE, BOB, "knock"), state, V11)
    with pytest.raises(AuthError):
        check(member(ALICE, BOB, "dance"), state, V11)


def test_sending_needs_membership_and_power() -> None:
    state = room(members={ALICE: "join", BOB: "join"})
    check(ev("m.room.message", BOB, {"body": "hi"}), state, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.message", CAROL, {"body": "hi"}), state, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.name", BOB, {"name": "x"}, ""), state, V11)
    check(ev("m.room.name", ALICE, {"name": "x"}, ""), state, V11)
    with pytest.raises(AuthError):  # state key naming another user
        check(ev("org.example", BOB, {}, ALICE), room(members={ALICE: "join", BOB: "join"},
                                                       levels={"state_default": 0}), V11)


def test_power_level_changes() -> None:
    state = room(members={ALICE: "join", BOB: "join"},
                 levels={"users": {ALICE: 100, BOB: 50}, "state_default": 50})
    with pytest.raises(AuthError):  # raising someone above yourself
        check(ev("m.room.power_levels", BOB, {"users": {ALICE: 100, BOB: 50, CAROL: 60}}, ""),
              state, V11)
    with pytest.raises(AuthError):  # demoting someone at or above you
        check(ev("m.room.power_levels", BOB, {"users": {ALICE: 0, BOB: 50}}, ""), state, V11)
    check(ev("m.room.power_levels", BOB, {"users": {ALICE: 100, BOB: 50, CAROL: 50},
                                          "state_default": 50}, ""), state, V11)
    with pytest.raises(AuthError):  # non-integer levels
        check(ev("m.room.power_levels", ALICE, {"users": {BOB: "50"}}, ""), state, V11)
    with pytest.raises(AuthError):
        check(ev("m.room.power_levels", ALICE, {"ban": True}, ""), state, V11)


def test_creator_power_without_power_levels() -> None:
    state = room()
    del state[("m.room.power_levels", "")]
    assert user_power_level(state, ALICE, V11) == 100
    assert user_power_level(state, BOB, V11) == 0
    v10 = dict(state)
    v10[("m.room.create", "")] = ev("m.room.create", BOB, {"creator": ALICE}, "", "$create")
    assert user_power_level(v10, ALICE, V10) == 100
