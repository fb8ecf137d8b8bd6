"""Events in federation format: content hash, redaction, signature, reference-hash ID.

Events are built exactly as a federating server builds them (spec: Server-Server API,
"Signing Events" and "Calculating the reference hash"), so federation can be added later
without rewriting history.
"""

from __future__ import annotations

import hashlib
from typing import Any

from canonicaljson import encode_canonical_json
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from mxkeys.services.room_versions import RoomVersion

# Top-level keys a redaction keeps (v10); v11 drops origin, membership and prev_state.
_KEEP_TOP_V10 = frozenset(
    {
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
        "origin_server_ts", "membership",
    }
)
_KEEP_TOP_V11 = _KEEP_TOP_V10 - {"origin", "membership", "prev_state"}

_KEEP_CONTENT_V10: dict[str, frozenset[str]] = {
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
    "m.room.power_levels": frozenset(
        {"ban", "events", "events_default", "kick", "redact", "state_default", "users",
         "users_default"}
    ),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
_KEEP_CONTENT_V11: dict[str, frozenset[str]] = {
    **_KEEP_CONTENT_V10,
    "m.room.power_levels": _KEEP_CONTENT_V10["m.room.power_levels"] | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}


def redact(event: dict[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The event as the room version's redaction algorithm leaves it."""
    keep_top = _KEEP_TOP_V11 if version.v11_redactions else _KEEP_TOP_V10
    keep_content = _KEEP_CONTENT_V11 if version.v11_redactions else _KEEP_CONTENT_V10
    pruned = {k: v for k, v in event.items() if k in keep_top}
    content = event.get("content", {})
    event_type = event.get("type")
    if event_type == "m.room.create" and version.v11_redactions:
        new_content = dict(content)
    else:
        allowed = keep_content.get(event_type, frozenset())
        new_content = {k: v for k, v in content.items() if k in allowed}
        if event_type == "m.room.member" and version.v11_redactions:
            signed = content.get("third_party_invite", {})
            if isinstance(signed, dict) and "signed" in signed:
                new_content["third_party_invite"] = {"signed": signed["signed"]}
    pruned["content"] = new_content
    return pruned


def content_hash(event: dict[str, Any]) -> str:
    stripped = {
        k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")
    }
    return encode_base64(hashlib.sha256(encode_canonical_json(stripped)).digest())


def reference_hash_event_id(event: dict[str, Any], version: RoomVersion) -> str:
    pruned = redact(event, version)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    pruned.pop("event_id", None)
    digest = hashlib.sha256(encode_canonical_json(pruned)).digest()
    return "$" + encode_base64(digest, urlsafe=True)


def hash_and_sign(
    event: dict[str, Any], version: RoomVersion, server_name: str, signing_key: Any
) -> str:
    """Add `hashes` and `signatures` to `event` in place; return its event ID."""
    event["hashes"] = {"sha256": content_hash(event)}
    signed = sign_json(redact(event, version), server_name, signing_key)
    event["signatures"] = signed["signatures"]
    return reference_hash_event_id(event, version)
