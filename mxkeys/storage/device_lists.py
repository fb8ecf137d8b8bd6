"""Who should hear about whose device-list changes: set-based queries over room membership
and the device-list stream (never a loop over members)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database
from mxkeys.storage.rooms_schema import memberships
from mxkeys.storage.schema import device_list_changes


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
        """(changed, left) for a sync of `user_id` over the given stream ranges.

        changed: users sharing a room with the user (or the user) whose device list changed,
        plus users who newly share a room; left: users who shared a room and share none now.
        """

        if lists_upto <= lists_after and events_upto <= events_after:
            return set(), set()

        def run(conn: Connection) -> tuple[set[str], set[str]]:
            shared = set(conn.execute(_shared_with(user_id)).scalars()) | {user_id}
            c = device_list_changes.c
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
            if events_upto > events_after:
                m = memberships.c
                # Rooms whose membership changed in the range, and which concern the user.
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
                        sa.select(m.room_id).where(m.user_id == user_id,
                                                   m.membership == "join")
                    ).scalars()
                )
                others = conn.execute(
                    sa.select(m.user_id, m.room_id, m.membership).where(
                        m.room_id.in_(sorted(my_rooms | set(rooms_left))),
                        m.user_id != user_id,
                        sa.or_(
                            sa.and_(m.stream_ordering > events_after,
                                    m.stream_ordering <= events_upto),
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
                changed -= left
                return changed, left
            return changed, set()

        return await self.db.read(run)
