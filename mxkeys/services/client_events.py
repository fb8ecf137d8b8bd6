"""Events as clients see them (spec: "Room Events", ClientEvent format)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mxkeys.ids import now_ms
from mxkeys.storage.rooms import StoredEvent


def client_event(
    event: StoredEvent,
    viewer: tuple[str, str] | None = None,
    redactions: Mapping[str, StoredEvent] | None = None,
    include_room_id: bool = True,
    now: int | None = None,
) -> dict[str, Any]:
    """`viewer` is (user_id, device_id): the sending device sees its transaction_id."""
    pdu = event.pdu
    out: dict[str, Any] = {
        "content": pdu.get("content", {}),
        "event_id": event.event_id,
        "origin_server_ts": pdu["origin_server_ts"],
        "sender": event.sender,
        "type": event.type,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if event.state_key is not None:
        out["state_key"] = event.state_key
    if event.type == "m.room.redaction":
        # v11 moved `redacts` into content; keep the top-level copy older clients read.
        redacts = pdu.get("redacts") or pdu.get("content", {}).get("redacts")
        if redacts is not None:
            out["redacts"] = redacts
    unsigned: dict[str, Any] = {"age": max(0, (now or now_ms()) - pdu["origin_server_ts"])}
    if (
        viewer is not None
        and event.txn_id is not None
        and event.sender == viewer[0]
        and event.txn_device_id == viewer[1]
    ):
        unsigned["transaction_id"] = event.txn_id
    if event.replaces_state is not None:
        unsigned["replaces_state"] = event.replaces_state
    if event.redacted_by is not None:
        redaction = (redactions or {}).get(event.redacted_by)
        unsigned["redacted_because"] = (
            client_event(redaction, include_room_id=include_room_id, now=now)
            if redaction is not None
            else {"event_id": event.redacted_by, "type": "m.room.redaction", "content": {}}
        )
    out["unsigned"] = unsigned
    return out


def stripped_event(event: StoredEvent) -> dict[str, Any]:
    return {
        "content": event.pdu.get("content", {}),
        "sender": event.sender,
        "state_key": event.state_key or "",
        "type": event.type,
    }
