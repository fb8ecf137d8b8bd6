"""The room versions this server implements, and how they differ.

Only versions whose every rule is implemented here are offered: v10 and v11 (both use
reference-hash event IDs, integer-only power levels and the v10 auth rules; v11 changes the
create event, the redaction algorithm and drops the top-level `origin`/`membership`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    # v11: `m.room.create` has no `content.creator`; the sender is the creator.
    create_has_creator: bool
    # v11 redaction algorithm (keeps `invite` in power levels, `redacts` in redactions,
    # all of create's content; drops top-level origin/membership/prev_state).
    v11_redactions: bool


ROOM_VERSIONS: dict[str, RoomVersion] = {
    "10": RoomVersion("10", create_has_creator=True, v11_redactions=False),
    "11": RoomVersion("11", create_has_creator=False, v11_redactions=True),
}
DEFAULT_ROOM_VERSION = "11"
