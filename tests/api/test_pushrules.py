import asyncio
from urllib.parse import quote

from tests.helpers import Api, assert_error

OVERRIDE_IDS = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
UNDERRIDE_IDS = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]


def _ids(rules: list[dict]) -> list[str]:
    return [rule["rule_id"] for rule in rules]


def _rule(kind: str, rule_id: str, suffix: str = "") -> str:
    return f"pushrules/global/{kind}/{quote(rule_id, safe='')}{suffix}"


def test_default_rule_set(api: Api) -> None:
    user = api.register()
    body = api.get("pushrules/", user).json()
    assert list(body) == ["global"]
    rules = body["global"]
    assert set(rules) == {"override", "content", "room", "sender", "underride"}
    assert _ids(rules["override"]) == OVERRIDE_IDS
    assert _ids(rules["underride"]) == UNDERRIDE_IDS
    assert rules["content"] == [] and rules["room"] == [] and rules["sender"] == []
    for kind in ("override", "underride"):
        for rule in rules[kind]:
            assert rule["default"] is True
            assert isinstance(rule["conditions"], list) and isinstance(rule["actions"], list)
            assert rule["enabled"] is (rule["rule_id"] != ".m.rule.master")
    by_id = {rule["rule_id"]: rule for rule in rules["override"] + rules["underride"]}
    assert by_id[".m.rule.master"] == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }
    assert by_id[".m.rule.invite_for_me"]["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
        {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
        {"kind": "event_match", "key": "state_key", "pattern": user.user_id},
    ]
    assert by_id[".m.rule.invite_for_me"]["actions"] == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
    ]
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {
            "kind": "event_property_contains",
            "key": "content.m\\.mentions.user_ids",
            "value": user.user_id,
        }
    ]
    assert by_id[".m.rule.is_user_mention"]["actions"] == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
        {"set_tweak": "highlight"},
    ]
    assert by_id[".m.rule.is_room_mention"]["conditions"] == [
        {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
        {"kind": "sender_notification_permission", "key": "room"},
    ]
    assert by_id[".m.rule.suppress_edits"]["conditions"] == [
        {
            "kind": "event_property_is",
            "key": "content.m\\.relates_to.rel_type",
            "value": "m.replace",
        }
    ]
    assert by_id[".m.rule.encrypted_room_one_to_one"]["conditions"] == [
        {"kind": "room_member_count", "is": "2"},
        {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"},
    ]
    assert by_id[".m.rule.call"]["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert by_id[".m.rule.message"]["actions"] == ["notify"]
    assert api.get("pushrules/global/", user).json() == rules
    assert _ids(api.get("pushrules/global/underride/", user).json()) == UNDERRIDE_IDS
    assert api.get(_rule("override", ".m.rule.master"), user).json() == by_id[".m.rule.master"]
    assert_error(api.get("pushrules/", None), 401, "M_MISSING_TOKEN")


def test_user_rules_order_and_positions(api: Api) -> None:
    user = api.register()
    assert (
        api.put(
            _rule("content", "cake"), user, json={"pattern": "cake", "actions": ["notify"]}
        ).json()
        == {}
    )
    # A new rule without before/after is the most important user rule of its kind.
    api.put(_rule("content", "tea"), user, json={"pattern": "tea", "actions": []})
    assert _ids(api.get("pushrules/global/content/", user).json()) == ["tea", "cake"]
    api.put(
        _rule("content", "pie"),
        user,
        json={"pattern": "pie", "actions": []},
        params={"after": "cake"},
    )
    api.put(
        _rule("content", "jam"),
        user,
        json={"pattern": "jam", "actions": []},
        params={"before": "cake"},
    )
    assert _ids(api.get("pushrules/global/content/", user).json()) == ["tea", "jam", "cake", "pie"]
    # before wins when both are given.
    api.put(
        _rule("content", "bun"),
        user,
        json={"pattern": "bun", "actions": []},
        params={"before": "tea", "after": "pie"},
    )
    assert _ids(api.get("pushrules/global/content/", user).json())[0] == "bun"
    assert_error(
        api.put(
            _rule("content", "x"),
            user,
            json={"pattern": "x", "actions": []},
            params={"before": "nope"},
        ),
        400,
        "M_UNKNOWN",
    )
    assert_error(
        api.put(
            _rule("content", "x"),
            user,
            json={"pattern": "x", "actions": []},
            params={"after": ".m.rule.master"},
        ),
        400,
        "M_UNKNOWN",
    )
    assert "x" not in _ids(api.get("pushrules/global/content/", user).json())

    rule = api.get(_rule("content", "cake"), user).json()
    assert rule == {
        "rule_id": "cake",
        "pattern": "cake",
        "actions": ["notify"],
        "enabled": True,
        "default": False,
    }

    # Override rules go after .m.rule.master and before the other defaults.
    api.put(
        _rule("override", "beer"),
        user,
        json={
            "conditions": [
                {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                {"kind": "room_member_count", "is": "<=10"},
            ],
            "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
        },
    )
    overrides = _ids(api.get("pushrules/global/override/", user).json())
    assert overrides[:3] == [".m.rule.master", "beer", ".m.rule.suppress_notices"]
    api.put(_rule("underride", "all"), user, json={"actions": ["dont_notify", "notify"]})
    underride = api.get("pushrules/global/underride/", user).json()
    assert underride[0] == {
        "rule_id": "all",
        "conditions": [],
        "actions": ["notify"],
        "enabled": True,
        "default": False,
    }
    room = "!dj234r78wl45Gh4D:matrix.org"
    api.put(_rule("room", room), user, json={"actions": []})
    api.put(_rule("sender", "@spambot:matrix.org"), user, json={"actions": []})
    rules = api.get("pushrules/", user).json()["global"]
    assert rules["room"] == [{"rule_id": room, "actions": [], "enabled": True, "default": False}]
    assert _ids(rules["sender"]) == ["@spambot:matrix.org"]


def test_update_delete_enabled_actions(api: Api) -> None:
    user = api.register()
    path = _rule("override", "mine")
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")
    api.put(path, user, json={"conditions": [], "actions": ["notify"]})
    api.put(_rule("override", "other"), user, json={"actions": []})
    assert api.put(path + "/enabled", user, json={"enabled": False}).json() == {}
    assert api.get(path + "/enabled", user).json() == {"enabled": False}
    # An update keeps the enabled state and moves the rule first (as Synapse does).
    api.put(path, user, json={"actions": [{"set_tweak": "highlight"}]})
    assert api.get(path, user).json()["enabled"] is False
    assert _ids(api.get("pushrules/global/override/", user).json())[1] == "mine"
    assert api.put(path + "/actions", user, json={"actions": ["notify"]}).json() == {}
    assert api.get(path + "/actions", user).json() == {"actions": ["notify"]}
    assert api.delete(path, user).json() == {}
    assert_error(api.get(path, user), 404, "M_NOT_FOUND")
    assert_error(api.delete(path, user), 404, "M_NOT_FOUND")
    assert_error(api.put(path + "/enabled", user, json={"enabled": True}), 404, "M_NOT_FOUND")
    assert_error(api.put(path + "/actions", user, json={"actions": []}), 404, "M_NOT_FOUND")
    assert_error(api.get(path + "/actions", user), 404, "M_NOT_FOUND")


def test_server_default_rules(api: Api) -> None:
    user = api.register()
    master = _rule("override", ".m.rule.master")
    assert api.put(master + "/enabled", user, json={"enabled": True}).status_code == 200
    assert api.get(master + "/enabled", user).json() == {"enabled": True}
    message = _rule("underride", ".m.rule.message")
    api.put(message + "/actions", user, json={"actions": []})
    got = api.get(message, user).json()
    assert got["actions"] == [] and got["default"] is True and got["conditions"]
    # Patterns/conditions of server-default rules cannot be changed, nor can they be deleted.
    assert_error(
        api.put(message, user, json={"actions": [], "conditions": []}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        api.put(_rule("override", ".m.rule.new"), user, json={"actions": []}),
        400,
        "M_INVALID_PARAM",
    )
    assert_error(api.delete(message, user), 400, "M_INVALID_PARAM")
    # Wrong kind for a default rule is unknown.
    assert_error(api.get(_rule("underride", ".m.rule.master"), user), 404, "M_NOT_FOUND")
    assert_error(
        api.put(_rule("content", ".m.rule.master") + "/enabled", user, json={"enabled": False}),
        404,
        "M_NOT_FOUND",
    )
    rules = api.get("pushrules/", user).json()["global"]
    assert rules["override"][0]["enabled"] is True
    assert _ids(rules["underride"]) == UNDERRIDE_IDS


def test_errors(api: Api) -> None:
    user = api.register()
    assert_error(api.get(_rule("bogus", "x"), user), 400, "M_INVALID_PARAM")
    assert_error(api.put(_rule("bogus", "x"), user, json={"actions": []}), 400, "M_INVALID_PARAM")
    assert_error(api.delete(_rule("bogus", "x"), user), 400, "M_INVALID_PARAM")
    assert_error(api.get(_rule("bogus", "x", "/enabled"), user), 400, "M_INVALID_PARAM")
    assert_error(api.get("pushrules/global/bogus/", user), 400, "M_INVALID_PARAM")
    assert_error(
        api.put(_rule("override", "a/b"), user, json={"actions": []}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        api.put(_rule("override", "a\\b"), user, json={"actions": []}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        api.put(_rule("room", "not-a-room"), user, json={"actions": []}), 400, "M_INVALID_PARAM"
    )
    assert_error(
        api.put(_rule("sender", "nobody"), user, json={"actions": []}), 400, "M_INVALID_PARAM"
    )
    assert_error(api.put(_rule("content", "c"), user, json={"actions": []}), 400, "M_MISSING_PARAM")
    assert_error(api.put(_rule("override", "o"), user, json={}), 400, "M_MISSING_PARAM")
    assert_error(
        api.put(_rule("override", "o"), user, json={"actions": "notify"}), 400, "M_BAD_JSON"
    )
    assert_error(
        api.put(_rule("override", "o"), user, json={"actions": ["explode"]}), 400, "M_BAD_JSON"
    )
    assert_error(
        api.put(_rule("override", "o"), user, json={"actions": [{"x": 1}]}), 400, "M_BAD_JSON"
    )
    assert_error(
        api.put(
            _rule("override", "o"), user, json={"actions": [], "conditions": [{"key": "type"}]}
        ),
        400,
        "M_BAD_JSON",
    )
    assert_error(
        api.put(
            _rule("override", "o"),
            user,
            json={"actions": [], "conditions": [{"kind": "x", "is": 2}]},
        ),
        400,
        "M_BAD_JSON",
    )
    assert_error(api.put(_rule("override", "o"), user, content=b"{"), 400, "M_NOT_JSON")
    assert_error(
        api.put(_rule("override", ".m.rule.master", "/enabled"), user, json={"enabled": "yes"}),
        400,
        "M_BAD_JSON",
    )
    assert_error(
        api.put(_rule("override", ".m.rule.master", "/enabled"), user, json={}),
        400,
        "M_MISSING_PARAM",
    )
    # Unknown condition kinds are accepted (they never match).
    assert (
        api.put(
            _rule("override", "o"),
            user,
            json={
                "actions": [],
                "conditions": [{"kind": "org.example.future", "extra": [1]}],
            },
        ).status_code
        == 200
    )
    assert api.get(_rule("override", "o"), user).json()["conditions"] == [
        {"kind": "org.example.future", "extra": [1]}
    ]
    assert api.get(_rule("override", "o"), user).status_code == 200


def test_isolation_and_account_data_stream(api: Api, server) -> None:
    hs = server.homeserver
    alice = api.register()
    bob = api.register()
    start = asyncio.run(hs.account_data.current_position())
    before = hs.notifier.counter(alice.user_id)
    api.put(_rule("sender", "@x:y"), alice, json={"actions": []})
    api.put(_rule("override", ".m.rule.master", "/enabled"), alice, json={"enabled": True})
    assert hs.notifier.counter(alice.user_id) == before + 2
    bob_rules = api.get("pushrules/", bob).json()["global"]
    assert bob_rules["sender"] == [] and bob_rules["override"][0]["enabled"] is False
    assert_error(api.get(_rule("sender", "@x:y"), bob), 404, "M_NOT_FOUND")

    async def changes() -> list:
        end = await hs.account_data.current_position()
        return await hs.account_data.get_changes(alice.user_id, start, end)

    import json

    entries = asyncio.run(changes())
    assert [(room, kind) for room, kind, _ in entries] == [(None, "m.push_rules")]
    content = json.loads(entries[0][2])
    assert content == api.get("pushrules/", alice).json()
    assert asyncio.run(hs.push_rules.rules_for(alice.user_id)) == content
    assert asyncio.run(changes_for(hs, bob.user_id, start)) == []
    # The account data API reads the same rule set.
    path = f"user/{quote(alice.user_id)}/account_data/m.push_rules"
    assert api.get(path, alice).json() == content


async def changes_for(hs, user_id: str, start: int) -> list:
    return await hs.account_data.get_changes(
        user_id, start, await hs.account_data.current_position()
    )
