"""Push rules (pushrules.yaml, modules/push.md): the server-default rule set, each user's own
rules, and their changes to the defaults.

A user's state is one document:
    {"rules": {kind: [user rule, most important first]},
     "defaults": {"<kind>/<rule_id>": {"enabled": bool, "actions": [...]}}}
where a user rule is in client format (`rule_id`, `actions`, `enabled`, plus `conditions` for
override/underride or `pattern` for content). The rule set clients see is derived from it and
the current defaults (so a new server version's defaults reach existing users), and every
change writes that rule set to the account data stream as `m.push_rules` in the same
transaction, so `/sync` delivers it.

Order within a kind: `.m.rule.master` first, then the user's rules, then the other
server-default rules (spec "Predefined Rules"). The defaults are exactly those of the spec
(v1.17: the legacy body-mention rules `.m.rule.contains_display_name`, `.m.rule.roomnotif`
and `.m.rule.contains_user_name` are gone, so there are no default content rules).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from mxkeys.errors import MatrixError, bad_json, invalid_param, missing_param, not_found
from mxkeys.services.notifier import Notifier
from mxkeys.storage.pushrules import PushRulesStore

KINDS = ("override", "content", "room", "sender", "underride")
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})

_NOTIFY_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}]


def default_rules(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The spec's server-default rules for a user, in priority order, per kind."""

    def rule(
        rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], enabled: bool = True
    ) -> dict[str, Any]:
        return {
            "rule_id": rule_id,
            "default": True,
            "enabled": enabled,
            "conditions": conditions,
            "actions": actions,
        }

    def match(key: str, pattern: str) -> dict[str, Any]:
        return {"kind": "event_match", "key": key, "pattern": pattern}

    override = [
        rule(".m.rule.master", [], [], enabled=False),
        rule(".m.rule.suppress_notices", [match("content.msgtype", "m.notice")], []),
        rule(
            ".m.rule.invite_for_me",
            [
                match("type", "m.room.member"),
                match("content.membership", "invite"),
                match("state_key", user_id),
            ],
            copy.deepcopy(_NOTIFY_SOUND),
        ),
        rule(".m.rule.member_event", [match("type", "m.room.member")], []),
        rule(
            ".m.rule.is_user_mention",
            [
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                }
            ],
            [*copy.deepcopy(_NOTIFY_SOUND), {"set_tweak": "highlight"}],
        ),
        rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", {"set_tweak": "highlight"}],
        ),
        rule(
            ".m.rule.tombstone",
            [match("type", "m.room.tombstone"), match("state_key", "")],
            ["notify", {"set_tweak": "highlight"}],
        ),
        rule(".m.rule.reaction", [match("type", "m.reaction")], []),
        rule(
            ".m.rule.room.server_acl",
            [match("type", "m.room.server_acl"), match("state_key", "")],
            [],
        ),
        rule(
            ".m.rule.suppress_edits",
            [
                {
                    "kind": "event_property_is",
                    "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace",
                }
            ],
            [],
        ),
    ]
    one_to_one = {"kind": "room_member_count", "is": "2"}
    underride = [
        rule(
            ".m.rule.call",
            [match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        rule(
            ".m.rule.encrypted_room_one_to_one",
            [dict(one_to_one), match("type", "m.room.encrypted")],
            copy.deepcopy(_NOTIFY_SOUND),
        ),
        rule(
            ".m.rule.room_one_to_one",
            [dict(one_to_one), match("type", "m.room.message")],
            copy.deepcopy(_NOTIFY_SOUND),
        ),
        rule(".m.rule.message", [match("type", "m.room.message")], ["notify"]),
        rule(".m.rule.encrypted", [match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"override": override, "content": [], "room": [], "sender": [], "underride": underride}


# -- request bodies ----------------------------------------------------------------------

SafeInt = Annotated[int, msgspec.Meta(ge=-(2**53) + 1, le=2**53 - 1)]


class ConditionModel(msgspec.Struct, kw_only=True):
    """A push condition's known fields, type-checked; unknown kinds and keys are kept."""

    kind: str
    key: str | None = None
    pattern: str | None = None
    is_: str | None = msgspec.field(default=None, name="is")
    value: str | SafeInt | bool | None = None


class RuleBody(msgspec.Struct, kw_only=True):
    actions: list[Any]
    conditions: list[dict[str, Any]] | None = None
    pattern: str | None = None


class EnabledBody(msgspec.Struct):
    enabled: bool


class ActionsBody(msgspec.Struct):
    actions: list[Any]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}")


def clean_actions(actions: list[Any]) -> list[Any]:
    """Validate actions (as Synapse: `notify` or a `set_tweak` object) and strip the
    historical `dont_notify`/`coalesce`, which the spec says to ignore."""
    out: list[Any] = []
    for action in actions:
        if isinstance(action, str):
            if action in HISTORICAL_ACTIONS:
                continue
            if action != "notify":
                raise bad_json(f"Unrecognised action {action!r}")
        elif not isinstance(action, dict) or not isinstance(action.get("set_tweak"), str):
            raise bad_json("Actions must be 'notify' or objects with a 'set_tweak' string")
        out.append(action)
    return out


def clean_conditions(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for condition in conditions:
        try:
            msgspec.convert(condition, type=ConditionModel)
        except msgspec.ValidationError as e:
            raise bad_json(f"Invalid push condition: {e}") from None
    return conditions


def user_rule(kind: str, rule_id: str, body: RuleBody) -> dict[str, Any]:
    """A new or replaced user rule in client format (enabled; the caller keeps the old
    `enabled` of a rule it updates)."""
    if rule_id.startswith("."):
        raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("Rule IDs may not contain '/' or '\\'")
    if kind == "room" and not rule_id.startswith("!"):
        raise invalid_param("The rule ID of a room rule is the room's ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise invalid_param("The rule ID of a sender rule is the sender's user ID")
    rule: dict[str, Any] = {
        "rule_id": rule_id,
        "enabled": True,
        "actions": clean_actions(body.actions),
    }
    if kind in ("override", "underride"):
        # The spec requires only `actions`; a rule without conditions matches everything.
        rule["conditions"] = clean_conditions(body.conditions or [])
    elif kind == "content":
        if body.pattern is None:
            raise missing_param("Content rules need a 'pattern'")
        rule["pattern"] = body.pattern
    return rule


# -- the document ------------------------------------------------------------------------


def _empty_document() -> dict[str, Any]:
    return {"rules": {}, "defaults": {}}


def ruleset(user_id: str, document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The user's full rule set (`global`), in priority order per kind."""
    defaults = default_rules(user_id)
    changes: dict[str, Any] = document.get("defaults", {})
    own: dict[str, list[dict[str, Any]]] = document.get("rules", {})
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        server = []
        for rule in defaults[kind]:
            change = changes.get(f"{kind}/{rule['rule_id']}", {})
            if "enabled" in change:
                rule["enabled"] = change["enabled"]
            if "actions" in change:
                rule["actions"] = change["actions"]
            server.append(rule)
        mine = [{**rule, "default": False} for rule in own.get(kind, [])]
        if kind == "override" and server and server[0]["rule_id"] == ".m.rule.master":
            out[kind] = [server[0], *mine, *server[1:]]
        else:
            out[kind] = [*mine, *server]
    return out


def _is_default(user_id: str, kind: str, rule_id: str) -> bool:
    return rule_id.startswith(".") and any(
        rule["rule_id"] == rule_id for rule in default_rules(user_id)[kind]
    )


class PushRulesService:
    def __init__(self, store: PushRulesStore, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier

    async def _document(self, user_id: str) -> dict[str, Any]:
        stored = await self.store.get(user_id)
        return _empty_document() if stored is None else msgspec.json.decode(stored)

    async def rules_for(self, user_id: str) -> dict[str, Any]:
        """The `m.push_rules` content: `{"global": ruleset}` (defaults if nothing stored)."""
        return {"global": ruleset(user_id, await self._document(user_id))}

    async def global_rules(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        return ruleset(user_id, await self._document(user_id))

    async def get_kind(self, user_id: str, kind: str) -> list[dict[str, Any]]:
        check_kind(kind)
        return (await self.global_rules(user_id))[kind]

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        for rule in await self.get_kind(user_id, kind):
            if rule["rule_id"] == rule_id:
                return rule
        raise not_found("Unknown push rule")

    async def _update(self, user_id: str, apply: Callable[[dict[str, Any]], None]) -> int:
        def change(current: str | None) -> tuple[str, str]:
            document = _empty_document() if current is None else msgspec.json.decode(current)
            apply(document)
            content = {"global": ruleset(user_id, document)}
            return (
                msgspec.json.encode(document).decode(),
                msgspec.json.encode(content).decode(),
            )

        position = await self.store.update(user_id, change)
        self.notifier.notify_users([user_id], ["account_data"])
        return position

    async def put_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        body: RuleBody,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        check_kind(kind)
        new_rule = user_rule(kind, rule_id, body)
        for anchor in (before, after):
            if anchor is not None and anchor.startswith("."):
                raise MatrixError(
                    400, "M_UNKNOWN", "Rules cannot be placed relative to server-default rules"
                )

        def apply(document: dict[str, Any]) -> None:
            rules: list[dict[str, Any]] = document["rules"].setdefault(kind, [])
            old = next((r for r in rules if r["rule_id"] == rule_id), None)
            if old is not None:
                # An update keeps the rule's enabled state (as Synapse does).
                new_rule["enabled"] = old.get("enabled", True)
                rules.remove(old)
            anchor = before if before is not None else after
            if anchor is None:
                # A new rule is the most important user rule of its kind (spec); an updated
                # one moves there too, as in Synapse.
                rules.insert(0, new_rule)
                return
            index = next((i for i, r in enumerate(rules) if r["rule_id"] == anchor), None)
            if index is None:
                raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {anchor}")
            rules.insert(index if before is not None else index + 1, new_rule)

        await self._update(user_id, apply)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if _is_default(user_id, kind, rule_id):
            raise invalid_param("Server-default rules cannot be deleted")

        def apply(document: dict[str, Any]) -> None:
            rules: list[dict[str, Any]] = document["rules"].get(kind, [])
            remaining = [r for r in rules if r["rule_id"] != rule_id]
            if len(remaining) == len(rules):
                raise not_found("Unknown push rule")
            document["rules"][kind] = remaining

        await self._update(user_id, apply)

    async def _set(self, user_id: str, kind: str, rule_id: str, field: str, value: Any) -> None:
        check_kind(kind)
        is_default = _is_default(user_id, kind, rule_id)

        def apply(document: dict[str, Any]) -> None:
            if is_default:
                document["defaults"].setdefault(f"{kind}/{rule_id}", {})[field] = value
                return
            for rule in document["rules"].get(kind, []):
                if rule["rule_id"] == rule_id:
                    rule[field] = value
                    return
            raise not_found("Unknown push rule")

        await self._update(user_id, apply)

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        await self._set(user_id, kind, rule_id, "enabled", enabled)

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: list[Any]) -> None:
        await self._set(user_id, kind, rule_id, "actions", clean_actions(actions))
