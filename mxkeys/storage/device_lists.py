"""Who should hear about whose device-list changes: set-based queries over room membership
and the device-list stream (never a loop over members), and the per-device key counts that
every `/sync` carries, all read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.device_keys import count_unclaimed_one_time_keys
from mxkeys.storage.rooms_schema import memberships
from mxkeys.storage.schema import device_list_changes, fallback_keys


def _shared_with(user_id: str) -> sa.Select:
    """Users joined to a room the user is joined to (including the user)."""
    mine = memberships.alias("mine")
    theirs = memberships.alias("theirs")
    return (
        sa.select(theirs.c.user_id)
        .select_from(mine.join(theirs, mine.c.room_id == theirs.c.room_id))
        .where(
            mine.c.user_id == user_id,
            mine.c.membership == "join",
            theirs.c.membership == "join",
        )
        .distinct()
    )


def _position(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(device_list_changes.c.stream_id))).scalar()
               or 0)


def _changes(
    conn: Connection, user_id: str, lists_after: int, lists_upto: int,
    events_after: int, events_upto: int,
) -> tuple[set[str], set[str]]:
    """(changed, left) of the user's device-list view over the two stream ranges."""
    if lists_upto <= lists_after and events_upto <= events_after:
        return set(), set()
    shared = set(conn.execute(_shared_with(user_id)).scalars()) | {user_id}
    c = device_list_changes.c
    changed: set[str] = set()
    if lists_upto > lists_after:
        changed = set(
            conn.execute(
                sa.select(c.user_id)
                .where(
                    c.stream_id > lists_after,
                    c.stream_id <= lists_upto,
                    c.user_id.in_(_shared_with(user_id).scalar_subquery())
                    | (c.user_id == user_id),
                )
                .distinct()
            ).scalars()
        )
    if events_upto <= events_after:
        return changed, set()
    m = memberships.c
    # The user's own membership changes in the range.
    my_changes = conn.execute(
        sa.select(m.room_id, m.membership).where(
            m.user_id == user_id,
            m.stream_ordering > events_after,
            m.stream_ordering <= events_upto,
        )
    ).all()
    rooms_joined = [r.room_id for r in my_changes if r.membership == "join"]
    rooms_left = [r.room_id for r in my_changes if r.membership != "join"]
    my_rooms = set(
        conn.execute(
            sa.select(m.room_id).where(m.user_id == user_id, m.membership == "join")
        ).scalars()
    )
    # Others whose membership changed in those rooms, and everyone in the rooms the user
    # joined or left in the range.
    others = conn.execute(
        sa.select(m.user_id, m.room_id, m.membership).where(
            m.room_id.in_(sorted(my_rooms | set(rooms_left))),
            m.user_id != user_id,
            sa.or_(
                sa.and_(m.stream_ordering > events_after, m.stream_ordering <= events_upto),
                m.room_id.in_(rooms_joined + rooms_left),
            ),
        )
    ).all()
    left: set[str] = set()
    for other in others:
        if other.membership == "join" and other.room_id in my_rooms:
            changed.add(other.user_id)  # newly sharing a room
        elif other.user_id not in shared:
            left.add(other.user_id)
    return changed - left, left


@dataclass(frozen=True, slots=True)
class DeviceSyncData:
    position: int
    one_time_key_counts: dict[str, int]
    unused_fallback_key_types: list[str]
    changed: set[str]
    left: set[str]


class DeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def users_sharing_rooms(self, user_id: str) -> set[str]:
        def run(conn: Connection) -> set[str]:
            return set(conn.execute(_shared_with(user_id)).scalars()) | {user_id}

        return await self.db.read(run)

    async def changes_for(
        self, user_id: str, lists_after: int, lists_upto: int,
        events_after: int, events_upto: int,
    ) -> tuple[set[str], set[str]]:
        """(changed, left) for `/keys/changes` between two tokens.

        changed: users sharing a room with the user (or the user) whose device list changed,
        plus users who newly share a room; left: users who shared a room and share none now.
        """
        return await self.db.read(
            lambda conn: _changes(
                conn, user_id, lists_after, lists_upto, events_after, events_upto
            )
        )

    async def sync_data(
        self, user_id: str, device_id: str, lists_after: int | None,
        events_after: int | None, events_upto: int,
    ) -> DeviceSyncData:
        """Everything `/sync` reports about devices, in one transaction: the stream's
        position, the device's unclaimed one-time-key counts and unused fallback key types,
        and (for an incremental sync) the changed/left users."""

        def run(conn: Connection) -> DeviceSyncData:
            position = _position(conn)
            counts = count_unclaimed_one_time_keys(conn, user_id, device_id)
            fallback = list(
                conn.execute(
                    sa.select(fallback_keys.c.algorithm)
                    .where(
                        fallback_keys.c.user_id == user_id,
                        fallback_keys.c.device_id == device_id,
                        fallback_keys.c.used == sa.false(),
                    )
                    .order_by(fallback_keys.c.algorithm)
                ).scalars()
            )
            changed: set[str] = set()
            left: set[str] = set()
            if lists_after is not None and events_after is not None:
                changed, left = _changes(
                    conn, user_id, lists_after, position, events_after, events_upto
                )
            return DeviceSyncData(position, counts, fallback, changed, left)

        return await self.db.read(run)
