import pytest

from mxkeys.errors import MatrixError
from mxkeys.services.filtering import RoomEventFilter, SyncFilter, split_field_path


def ev(event_type: str, sender: str = "@a:x", room_id: str = "!r:x", **content: object) -> dict:
    return {"type": event_type, "sender": sender, "room_id": room_id, "content": content}


def test_defaults_allow_everything() -> None:
    f = SyncFilter.default()
    assert f.timeline_limit == 10
    assert f.allows_room("!any:x")
    assert f.timeline_allows(ev("m.room.message"))
    assert f.state_allows(ev("m.room.member"))
    assert f.ephemeral_allows({"type": "m.typing", "content": {}})
    assert f.account_data_allows("m.direct")
    assert f.room_account_data_allows("m.tag")
    assert not f.lazy_load_members and not f.include_redundant_members and not f.include_leave
    assert f.event_format == "client" and f.event_fields is None


def test_types_wildcards_and_not_types_win() -> None:
    f = SyncFilter.from_json(
        {
            "room": {
                "timeline": {
                    "types": ["m.room.*", "org.*.thing", "exact"],
                    "not_types": ["m.room.member", "*.secret"],
                }
            }
        }
    )
    allows = f.timeline_allows
    assert allows(ev("m.room.message"))
    assert allows(ev("m.room.")) and allows(ev("org.example.thing")) and allows(ev("exact"))
    assert allows(ev("org..thing"))
    assert not allows(ev("m.room.member"))  # not_types wins over types
    assert not allows(ev("m.room.top.secret"))
    assert not allows(ev("m.roomx"))  # "m.room.*" needs the dot
    assert not allows(ev("exactly")) and not allows(ev("xexact"))
    assert not allows(ev("org.example.thing2"))
    # Regex metacharacters are literal.
    g = SyncFilter.from_json({"room": {"timeline": {"types": ["a.b+(c)"]}}})
    assert g.timeline_allows(ev("a.b+(c)")) and not g.timeline_allows(ev("aXb+(c)"))
    star = SyncFilter.from_json({"room": {"timeline": {"types": ["*"]}}})
    assert star.timeline_allows(ev("anything")) and star.timeline_allows(ev(""))
    none = SyncFilter.from_json({"room": {"timeline": {"types": []}}})
    assert not none.timeline_allows(ev("m.room.message"))


def test_senders() -> None:
    f = SyncFilter.from_json(
        {
            "room": {
                "state": {
                    "senders": ["@a:x", "@b:x"],
                    "not_senders": ["@b:x"],
                }
            }
        }
    )
    assert f.state_allows(ev("t", sender="@a:x"))
    assert not f.state_allows(ev("t", sender="@b:x"))
    assert not f.state_allows(ev("t", sender="@c:x"))
    # No sender never matches a senders list (as in Synapse).
    assert not f.state_allows({"type": "t"})
    only_not = SyncFilter.from_json({"room": {"ephemeral": {"not_senders": ["@spam:x"]}}})
    assert only_not.ephemeral_allows({"type": "m.typing"})
    assert not only_not.ephemeral_allows({"type": "m.receipt", "sender": "@spam:x"})
    # Sender IDs are exact, not wildcards.
    assert not SyncFilter.from_json({"room": {"timeline": {"senders": ["@*"]}}}).timeline_allows(
        ev("t", sender="@a:x")
    )


def test_rooms_top_level_and_per_section() -> None:
    f = SyncFilter.from_json(
        {
            "room": {
                "rooms": ["!a:x", "!b:x"],
                "not_rooms": ["!b:x"],
                "timeline": {"not_rooms": ["!a:x"]},
                "account_data": {"rooms": ["!c:x"]},
                "include_leave": True,
            }
        }
    )
    assert f.allows_room("!a:x") and not f.allows_room("!b:x") and not f.allows_room("!c:x")
    assert f.include_leave
    assert not f.timeline_allows(ev("t", room_id="!a:x"))
    assert f.timeline_allows(ev("t", room_id="!z:x"))
    # An explicit room_id overrides the event's (client events in /sync have none).
    assert not f.timeline_allows({"type": "t", "sender": "@a:x"}, room_id="!a:x")
    assert f.timeline_allows({"type": "t", "sender": "@a:x"})
    assert f.room_account_data_allows("m.tag", "!c:x")
    assert not f.room_account_data_allows("m.tag", "!a:x")
    assert f.room_account_data_allows("m.tag")


def test_contains_url() -> None:
    with_url = SyncFilter.from_json({"room": {"timeline": {"contains_url": True}}})
    without = SyncFilter.from_json({"room": {"timeline": {"contains_url": False}}})
    image = ev("m.room.message", url="mxc://x/y")
    text = ev("m.room.message", body="hi")
    odd = ev("m.room.message", url=5)
    assert with_url.timeline_allows(image) and not with_url.timeline_allows(text)
    assert not with_url.timeline_allows(odd)
    assert without.timeline_allows(text) and not without.timeline_allows(image)


def test_account_data_and_presence() -> None:
    f = SyncFilter.from_json(
        {
            "account_data": {"not_types": ["m.push_rules"]},
            "presence": {"types": ["m.presence"], "not_senders": ["@q:x"]},
            "room": {"account_data": {"types": ["m.tag"]}},
        }
    )
    assert f.account_data_allows("m.direct") and not f.account_data_allows("m.push_rules")
    assert f.room_account_data_allows("m.tag") and not f.room_account_data_allows("m.fully_read")
    assert f.presence_allows({"type": "m.presence", "sender": "@p:x"})
    assert not f.presence_allows({"type": "m.presence", "sender": "@q:x"})


def test_limits_and_lazy_loading() -> None:
    assert SyncFilter.from_json({"room": {"timeline": {"limit": 0}}}).timeline_limit == 0
    assert SyncFilter.from_json({"room": {"timeline": {"limit": 50}}}).timeline_limit == 50
    assert SyncFilter.from_json({"room": {"timeline": {"limit": 10**9}}}).timeline_limit == 100
    f = SyncFilter.from_json(
        {
            "room": {
                "state": {
                    "lazy_load_members": True,
                    "include_redundant_members": True,
                }
            }
        }
    )
    assert f.lazy_load_members and f.include_redundant_members
    # /sync lazy-loads only from the state filter (sync.yaml).
    assert not SyncFilter.from_json(
        {"room": {"timeline": {"lazy_load_members": True}}}
    ).lazy_load_members


def test_invalid_definitions() -> None:
    for bad in (
        [],
        "x",
        {"room": {"timeline": {"limit": -5}}},
        {"room": {"rooms": [1]}},
        {"room": {"not_rooms": ["#alias:x"]}},
        {"event_format": "raw"},
        {"room": {"timeline": {"not_senders": ["x"]}}},
    ):
        with pytest.raises(MatrixError) as err:
            SyncFilter.from_json(bad)
        assert (err.value.status, err.value.errcode) == (400, "M_BAD_JSON")


def test_room_event_filter_for_messages() -> None:
    f = RoomEventFilter.from_json(
        {
            "types": ["m.room.message"],
            "lazy_load_members": True,
            "limit": 5,
            "not_senders": ["@x:x"],
        }
    )
    assert f.limit == 5 and f.lazy_load_members and not f.include_redundant_members
    assert f.allows(ev("m.room.message")) and not f.allows(ev("m.room.message", sender="@x:x"))
    assert not f.allows(ev("m.reaction"))
    assert RoomEventFilter.from_param(None).allows(ev("anything"))
    assert not RoomEventFilter.from_param('{"types":[]}').allows(ev("anything"))
    with pytest.raises(MatrixError) as err:
        RoomEventFilter.from_param("{oops")
    assert err.value.errcode == "M_NOT_JSON"
    with pytest.raises(MatrixError) as err:
        RoomEventFilter.from_json({"contains_url": "yes"})
    assert err.value.errcode == "M_BAD_JSON"


def test_event_fields() -> None:
    assert split_field_path("content.m\\.relates_to.rel_type") == [
        "content",
        "m.relates_to",
        "rel_type",
    ]
    assert split_field_path("content.m\\\\foo") == ["content", "m\\foo"]
    assert split_field_path("content.a\\x") == ["content", "a\\x"]
    f = SyncFilter.from_json(
        {
            "event_fields": [
                "type",
                "content.body",
                "content.m\\.relates_to.rel_type",
                "missing.path",
            ]
        }
    )
    event = {
        "type": "m.room.message",
        "sender": "@a:x",
        "content": {
            "body": "hi",
            "msgtype": "m.text",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$e"},
        },
    }
    assert f.apply_event_fields(event) == {
        "type": "m.room.message",
        "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}},
    }
    assert SyncFilter.default().apply_event_fields(event) is event
