"""Rooms and events: persisting an event atomically with its auth checks, and the reads that
room endpoints and `/sync` need (batched across rooms).

Persisting runs the caller's pure `build` function (from the services layer) inside the
write transaction, after loading the auth-relevant state, so building, authorising and
storing an event is atomic per room. On PostgreSQL an advisory transaction lock serializes
event writers, so stream positions become visible in the order they were allocated (a sync
never skips an event committed late); SQLite writers are serialized anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.rooms_schema import (
    current_state,
    event_txns,
    events,
    memberships,
    rooms,
)

EVENTS_STREAM_LOCK = 7301001
StateKey = tuple[str, str]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class StoredEvent:
    event_id: str
    room_id: str
    stream_ordering: int
    type: str
    state_key: str | None
    sender: str
    pdu: dict[str, Any]
    replaces_state: str | None = None
    redacted_by: str | None = None
    txn_device_id: str | None = None
    txn_id: str | None = None

    @property
    def key(self) -> StateKey:
        return (self.type, self.state_key or "")


_EVENT_COLUMNS = (
    events.c.event_id,
    events.c.room_id,
    events.c.stream_ordering,
    events.c.type,
    events.c.state_key,
    events.c.sender,
    events.c.json,
    events.c.replaces_state,
    events.c.redacted_by,
    events.c.txn_device_id,
    events.c.txn_id,
)


def _event(row: Any) -> StoredEvent:
    pdu = _decode(row.json)
    pdu["event_id"] = row.event_id
    return StoredEvent(
        row.event_id, row.room_id, row.stream_ordering, row.type, row.state_key, row.sender,
        pdu, row.replaces_state, row.redacted_by, row.txn_device_id, row.txn_id,
    )


@dataclass(slots=True)
class RoomSnapshot:
    """What an event builder sees: the room's version and the state it asked for."""

    room_version: str | None
    state: dict[StateKey, dict[str, Any]]
    prev_event_id: str | None
    depth: int
    events: dict[str, StoredEvent] = field(default_factory=dict)


@dataclass(slots=True)
class NewEvent:
    """A built, authorised, signed event ready to store."""

    event_id: str
    pdu: dict[str, Any]  # without event_id
    # For a redaction: the target event and its redacted federation JSON.
    redact_target: tuple[str, dict[str, Any]] | None = None


@dataclass(slots=True)
class NewRoom:
    room_version: str
    creator: str
    is_public: bool
    created_ts: int


@dataclass(slots=True)
class Persisted:
    event: StoredEvent
    # Users whose /sync has something new: the room's members and the event's target.
    notify: list[str]
    # True when the transaction ID had been used: `event` is the earlier event.
    deduplicated: bool = False


@dataclass(slots=True)
class Membership:
    room_id: str
    membership: str
    event_id: str
    stream_ordering: int
    forgotten: bool


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing -------------------------------------------------------------------------

    async def persist_event(
        self,
        room_id: str,
        wanted_state: Collection[StateKey],
        build: Callable[[RoomSnapshot], NewEvent],
        *,
        new_room: NewRoom | None = None,
        txn: tuple[str, str, str] | None = None,
        wanted_events: Collection[str] = (),
    ) -> Persisted:
        """Load the room's snapshot, let `build` make the event (or raise), store it."""

        def run(conn: Connection) -> Persisted:
            if self.db.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(EVENTS_STREAM_LOCK)))
            if txn is not None:
                earlier = conn.execute(
                    sa.select(event_txns.c.event_id).where(
                        event_txns.c.user_id == txn[0],
                        event_txns.c.device_id == txn[1],
                        event_txns.c.txn_id == txn[2],
                    )
                ).first()
                if earlier is not None:
                    event = self._get_event(conn, earlier.event_id)
                    if event is not None:
                        return Persisted(event, [], deduplicated=True)
            if new_room is not None:
                conn.execute(
                    rooms.insert().values(
                        room_id=room_id,
                        room_version=new_room.room_version,
                        creator=new_room.creator,
                        is_public=new_room.is_public,
                        created_ts=new_room.created_ts,
                    )
                )
            snapshot = self._snapshot(conn, room_id, wanted_state, wanted_events)
            new = build(snapshot)
            return self._store(conn, room_id, snapshot, new, txn)

        return await self.db.write(run)

    def _snapshot(
        self,
        conn: Connection,
        room_id: str,
        wanted_state: Collection[StateKey],
        wanted_events: Collection[str],
    ) -> RoomSnapshot:
        version = conn.execute(
            sa.select(rooms.c.room_version).where(rooms.c.room_id == room_id)
        ).scalar()
        state: dict[StateKey, dict[str, Any]] = {}
        if version is not None and wanted_state:
            keys = list(dict.fromkeys(wanted_state))
            rows = conn.execute(
                sa.select(*_EVENT_COLUMNS)
                .select_from(
                    current_state.join(events, events.c.event_id == current_state.c.event_id)
                )
                .where(
                    current_state.c.room_id == room_id,
                    sa.tuple_(current_state.c.type, current_state.c.state_key).in_(keys),
                )
            )
            for row in rows:
                event = _event(row)
                state[event.key] = event.pdu
        last = conn.execute(
            sa.select(events.c.event_id, events.c.depth)
            .where(events.c.room_id == room_id)
            .order_by(events.c.stream_ordering.desc())
            .limit(1)
        ).first()
        snapshot = RoomSnapshot(
            version, state, last.event_id if last else None, last.depth if last else 0
        )
        if wanted_events:
            rows = conn.execute(
                sa.select(*_EVENT_COLUMNS).where(
                    events.c.event_id.in_(list(wanted_events)), events.c.room_id == room_id
                )
            )
            snapshot.events = {row.event_id: _event(row) for row in rows}
        return snapshot

    def _store(
        self,
        conn: Connection,
        room_id: str,
        snapshot: RoomSnapshot,
        new: NewEvent,
        txn: tuple[str, str, str] | None,
    ) -> Persisted:
        pdu = new.pdu
        position = self.position(conn) + 1
        state_key = pdu.get("state_key")
        replaces = None
        if state_key is not None:
            old = snapshot.state.get((pdu["type"], state_key))
            replaces = old["event_id"] if old else None
            if old is None:
                replaces = conn.execute(
                    sa.select(current_state.c.event_id).where(
                        current_state.c.room_id == room_id,
                        current_state.c.type == pdu["type"],
                        current_state.c.state_key == state_key,
                    )
                ).scalar()
        conn.execute(
            events.insert().values(
                stream_ordering=position,
                event_id=new.event_id,
                room_id=room_id,
                type=pdu["type"],
                state_key=state_key,
                sender=pdu["sender"],
                depth=pdu["depth"],
                origin_server_ts=pdu["origin_server_ts"],
                json=_encode(pdu).decode(),
                replaces_state=replaces,
                txn_device_id=txn[1] if txn else None,
                txn_id=txn[2] if txn else None,
            )
        )
        if txn is not None:
            conn.execute(
                event_txns.insert().values(
                    user_id=txn[0], device_id=txn[1], txn_id=txn[2], event_id=new.event_id
                )
            )
        target = None
        if state_key is not None:
            upsert = dialect_insert(self.db.dialect, current_state).values(
                room_id=room_id, type=pdu["type"], state_key=state_key,
                event_id=new.event_id, stream_ordering=position,
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["room_id", "type", "state_key"],
                    set_={"event_id": new.event_id, "stream_ordering": position},
                )
            )
            if pdu["type"] == "m.room.member":
                target = state_key
                membership = pdu["content"]["membership"]
                upsert = dialect_insert(self.db.dialect, memberships).values(
                    room_id=room_id, user_id=state_key, membership=membership,
                    event_id=new.event_id, stream_ordering=position, forgotten=False,
                )
                conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["room_id", "user_id"],
                        set_={
                            "membership": membership,
                            "event_id": new.event_id,
                            "stream_ordering": position,
                            "forgotten": False,
                        },
                    )
                )
        if new.redact_target is not None:
            target_id, redacted = new.redact_target
            conn.execute(
                events.update()
                .where(events.c.event_id == target_id, events.c.redacted_by.is_(None))
                .values(json=_encode(redacted).decode(), redacted_by=new.event_id)
            )
        notify = list(
            conn.execute(
                sa.select(memberships.c.user_id).where(
                    memberships.c.room_id == room_id, memberships.c.membership == "join"
                )
            ).scalars()
        )
        if target is not None and target not in notify:
            notify.append(target)
        stored = StoredEvent(
            new.event_id, room_id, position, pdu["type"], state_key, pdu["sender"],
            {**pdu, "event_id": new.event_id}, replaces, None,
            txn[1] if txn else None, txn[2] if txn else None,
        )
        return Persisted(stored, notify)

    async def forget(self, room_id: str, user_id: str) -> bool:
        """Mark a left room forgotten; False if the user is still in it (or never was)."""

        def run(conn: Connection) -> bool:
            result = conn.execute(
                memberships.update()
                .where(
                    memberships.c.room_id == room_id,
                    memberships.c.user_id == user_id,
                    memberships.c.membership.in_(["leave", "ban"]),
                )
                .values(forgotten=True)
            )
            return result.rowcount == 1

        return await self.db.write(run)

    # -- reading -------------------------------------------------------------------------

    def _get_event(self, conn: Connection, event_id: str) -> StoredEvent | None:
        query = sa.select(*_EVENT_COLUMNS).where(events.c.event_id == event_id)
        row = conn.execute(query).first()
        return _event(row) if row else None

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return await self.db.read(lambda conn: self._get_event(conn, event_id))

    async def get_events(self, event_ids: Collection[str]) -> dict[str, StoredEvent]:
        """The stored events among `event_ids`, in one query."""
        if not event_ids:
            return {}

        def run(conn: Connection) -> dict[str, StoredEvent]:
            query = sa.select(*_EVENT_COLUMNS).where(events.c.event_id.in_(list(event_ids)))
            return {row.event_id: _event(row) for row in conn.execute(query)}

        return await self.db.read(run)

    async def get_room_version(self, room_id: str) -> str | None:
        def run(conn: Connection) -> str | None:
            return conn.execute(
                sa.select(rooms.c.room_version).where(rooms.c.room_id == room_id)
            ).scalar()

        return await self.db.read(run)

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        def run(conn: Connection) -> Membership | None:
            row = conn.execute(
                sa.select(memberships).where(
                    memberships.c.room_id == room_id, memberships.c.user_id == user_id
                )
            ).first()
            return _membership(row) if row else None

        return await self.db.read(run)

    async def get_user_memberships(
        self, user_id: str, kinds: Collection[str] | None = None
    ) -> list[Membership]:
        def run(conn: Connection) -> list[Membership]:
            query = sa.select(memberships).where(memberships.c.user_id == user_id)
            if kinds is not None:
                query = query.where(memberships.c.membership.in_(list(kinds)))
            return [_membership(row) for row in conn.execute(query)]

        return await self.db.read(run)

    async def get_state(
        self, room_id: str, at: int | None = None, key: StateKey | None = None
    ) -> list[StoredEvent]:
        """The room's state now, or as it was at stream position `at`; optionally one key."""

        def run(conn: Connection) -> list[StoredEvent]:
            if at is None:
                query = (
                    sa.select(*_EVENT_COLUMNS)
                    .select_from(
                        current_state.join(events, events.c.event_id == current_state.c.event_id)
                    )
                    .where(current_state.c.room_id == room_id)
                )
                if key is not None:
                    query = query.where(
                        current_state.c.type == key[0], current_state.c.state_key == key[1]
                    )
                return [_event(row) for row in conn.execute(query)]
            return self._state_at(conn, {room_id: at}, key).get(room_id, [])

        return await self.db.read(run)

    def _state_at(
        self, conn: Connection, bounds: dict[str, int], key: StateKey | None = None
    ) -> dict[str, list[StoredEvent]]:
        """State of each room as of its bound: the latest state event per key at or before it."""
        if not bounds:
            return {}
        ranked = sa.select(
            *_EVENT_COLUMNS,
            sa.func.row_number()
            .over(
                partition_by=(events.c.room_id, events.c.type, events.c.state_key),
                order_by=events.c.stream_ordering.desc(),
            )
            .label("rank"),
        ).where(
            events.c.room_id.in_(list(bounds)),
            events.c.state_key.is_not(None),
            events.c.stream_ordering <= max(bounds.values()),
        )
        if key is not None:
            ranked = ranked.where(events.c.type == key[0], events.c.state_key == key[1])
        if len(set(bounds.values())) > 1:
            # Different bounds per room: rank only the events under each room's own bound.
            ranked = ranked.where(
                sa.or_(
                    *(
                        sa.and_(events.c.room_id == room, events.c.stream_ordering <= bound)
                        for room, bound in bounds.items()
                    )
                )
            )
        sub = ranked.subquery()
        rows = conn.execute(sa.select(sub).where(sub.c.rank == 1))
        result: dict[str, list[StoredEvent]] = defaultdict(list)
        for row in rows:
            result[row.room_id].append(_event(row))
        return result

    async def get_members(
        self, room_id: str, at: int | None = None
    ) -> list[StoredEvent]:
        def run(conn: Connection) -> list[StoredEvent]:
            if at is None:
                query = (
                    sa.select(*_EVENT_COLUMNS)
                    .select_from(
                        current_state.join(events, events.c.event_id == current_state.c.event_id)
                    )
                    .where(
                        current_state.c.room_id == room_id,
                        current_state.c.type == "m.room.member",
                    )
                )
                return [_event(row) for row in conn.execute(query)]
            state = self._state_at(conn, {room_id: at}).get(room_id, [])
            return [e for e in state if e.type == "m.room.member"]

        return await self.db.read(run)

    async def paginate(
        self,
        room_id: str,
        from_pos: int,
        to_pos: int | None,
        backwards: bool,
        limit: int,
        ceiling: int | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` events after `from_pos` (forwards) or at/before it (backwards),
        never past `to_pos`, nor past `ceiling` (what the requester may see)."""

        def run(conn: Connection) -> list[StoredEvent]:
            query = sa.select(*_EVENT_COLUMNS).where(events.c.room_id == room_id)
            if backwards:
                query = query.where(events.c.stream_ordering <= from_pos)
                if to_pos is not None:
                    query = query.where(events.c.stream_ordering > to_pos)
                query = query.order_by(events.c.stream_ordering.desc())
            else:
                query = query.where(events.c.stream_ordering > from_pos)
                if to_pos is not None:
                    query = query.where(events.c.stream_ordering <= to_pos)
                query = query.order_by(events.c.stream_ordering.asc())
            if ceiling is not None:
                query = query.where(events.c.stream_ordering <= ceiling)
            return [_event(row) for row in conn.execute(query.limit(limit))]

        return await self.db.read(run)

    async def current_position(self) -> int:
        def run(conn: Connection) -> int:
            return conn.execute(sa.select(sa.func.max(events.c.stream_ordering))).scalar() or 0

        return await self.db.read(run)

    # -- /sync ----------------------------------------------------------------------------

    def sync_memberships(self, conn: Connection, user_id: str) -> list[Membership]:
        query = sa.select(memberships).where(memberships.c.user_id == user_id)
        return [_membership(row) for row in conn.execute(query)]

    def position(self, conn: Connection) -> int:
        return conn.execute(sa.select(sa.func.max(events.c.stream_ordering))).scalar() or 0

    def rooms_with_events(
        self, conn: Connection, room_ids: Collection[str], after: int, upto: int
    ) -> set[str]:
        if not room_ids:
            return set()
        query = (
            sa.select(events.c.room_id)
            .where(
                events.c.room_id.in_(list(room_ids)),
                events.c.stream_ordering > after,
                events.c.stream_ordering <= upto,
            )
            .distinct()
        )
        return set(conn.execute(query).scalars())

    def recent_events(
        self, conn: Connection, bounds: dict[str, tuple[int, int]], limit: int
    ) -> dict[str, list[StoredEvent]]:
        """For each room, up to `limit` latest events in (after, upto], ascending. One query
        per distinct bound pair (normally one for all rooms)."""
        by_bounds: dict[tuple[int, int], list[str]] = defaultdict(list)
        for room_id, bound in bounds.items():
            by_bounds[bound].append(room_id)
        result: dict[str, list[StoredEvent]] = {room: [] for room in bounds}
        for (after, upto), room_ids in by_bounds.items():
            ranked = sa.select(
                *_EVENT_COLUMNS,
                sa.func.row_number()
                .over(partition_by=events.c.room_id, order_by=events.c.stream_ordering.desc())
                .label("rank"),
            ).where(
                events.c.room_id.in_(room_ids),
                events.c.stream_ordering > after,
                events.c.stream_ordering <= upto,
            ).subquery()
            rows = conn.execute(
                sa.select(ranked)
                .where(ranked.c.rank <= limit)
                .order_by(ranked.c.stream_ordering.asc())
            )
            for row in rows:
                result[row.room_id].append(_event(row))
        return result

    def state_at_many(
        self, conn: Connection, bounds: dict[str, int]
    ) -> dict[str, list[StoredEvent]]:
        return self._state_at(conn, bounds)

    def state_keys_changed(
        self, conn: Connection, bounds: dict[str, tuple[int, int]]
    ) -> dict[str, set[StateKey]]:
        """Per room, the state keys changed by events in (after, before)."""
        if not bounds:
            return {}
        low = min(b[0] for b in bounds.values())
        rows = conn.execute(
            sa.select(events.c.room_id, events.c.type, events.c.state_key,
                      events.c.stream_ordering).where(
                events.c.room_id.in_(list(bounds)),
                events.c.state_key.is_not(None),
                events.c.stream_ordering > low,
            )
        )
        changed: dict[str, set[StateKey]] = defaultdict(set)
        for row in rows:
            after, before = bounds[row.room_id]
            if after < row.stream_ordering < before:
                changed[row.room_id].add((row.type, row.state_key))
        return changed

    def current_state_of(
        self, conn: Connection, room_ids: Iterable[str], types: Collection[str] | None = None
    ) -> dict[str, list[StoredEvent]]:
        room_list = list(room_ids)
        if not room_list:
            return {}
        query = (
            sa.select(*_EVENT_COLUMNS)
            .select_from(
                current_state.join(events, events.c.event_id == current_state.c.event_id)
            )
            .where(current_state.c.room_id.in_(room_list))
        )
        if types is not None:
            query = query.where(current_state.c.type.in_(list(types)))
        result: dict[str, list[StoredEvent]] = defaultdict(list)
        for row in conn.execute(query):
            result[row.room_id].append(_event(row))
        return result

    def member_counts(
        self, conn: Connection, room_ids: Collection[str]
    ) -> dict[str, dict[str, int]]:
        if not room_ids:
            return {}
        rows = conn.execute(
            sa.select(memberships.c.room_id, memberships.c.membership, sa.func.count())
            .where(
                memberships.c.room_id.in_(list(room_ids)),
                memberships.c.membership.in_(["join", "invite"]),
            )
            .group_by(memberships.c.room_id, memberships.c.membership)
        )
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for room_id, membership, count in rows:
            counts[room_id][membership] = count
        return counts

    def heroes(
        self, conn: Connection, room_ids: Collection[str], user_id: str, limit: int = 5
    ) -> dict[str, list[str]]:
        """Up to `limit` other joined or invited members per room, earliest first."""
        if not room_ids:
            return {}
        ranked = sa.select(
            memberships.c.room_id,
            memberships.c.user_id,
            sa.func.row_number()
            .over(partition_by=memberships.c.room_id, order_by=memberships.c.stream_ordering)
            .label("rank"),
        ).where(
            memberships.c.room_id.in_(list(room_ids)),
            memberships.c.membership.in_(["join", "invite"]),
            memberships.c.user_id != user_id,
        ).subquery()
        rows = conn.execute(sa.select(ranked).where(ranked.c.rank <= limit))
        result: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            result[row.room_id].append(row.user_id)
        return result

    async def snapshot_read(self, fn: Callable[[Connection], Any]) -> Any:
        """Run `fn` in one read transaction that sees one consistent snapshot (REPEATABLE
        READ on PostgreSQL; SQLite read transactions already are)."""

        def run(conn: Connection) -> Any:
            if self.db.dialect == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return fn(conn)

        return await self.db.read(run)


def _membership(row: Any) -> Membership:
    return Membership(
        row.room_id, row.membership, row.event_id, row.stream_ordering, bool(row.forgotten)
    )


class FutureToken(Exception):
    """A sync token ahead of everything this server has written."""


STRIPPED_STATE_TYPES = (
    "m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
    "m.room.canonical_alias", "m.room.encryption", "m.room.topic", "m.room.member",
)


@dataclass(slots=True)
class SyncRoom:
    membership: Membership
    timeline: list[StoredEvent]
    limited: bool
    state: list[StoredEvent]
    # True when `state` is the full state at the timeline's start, not a delta.
    full_state: bool


@dataclass(slots=True)
class SyncRooms:
    position: int
    joined: list[SyncRoom]
    left: list[SyncRoom]
    invited: list[tuple[Membership, list[StoredEvent]]]
    counts: dict[str, dict[str, int]]
    heroes: dict[str, list[str]]


async def load_sync_rooms(
    store: RoomStore,
    user_id: str,
    since: int | None,
    limit: int,
    full_state: bool,
    include_leave: bool,
    room_allowed: Callable[[str], bool],
) -> SyncRooms:
    """Everything `/sync` needs about rooms, from one consistent snapshot."""

    def run(conn: Connection) -> SyncRooms:
        position = store.position(conn)
        if since is not None and since > position:
            raise FutureToken()
        mems = [m for m in store.sync_memberships(conn, user_id) if room_allowed(m.room_id)]
        joined = [m for m in mems if m.membership == "join"]
        initial = since is None
        if initial or full_state:
            join_rooms = joined
        else:
            assert since is not None
            active = store.rooms_with_events(conn, [m.room_id for m in joined], since, position)
            join_rooms = [m for m in joined if m.room_id in active or m.stream_ordering > since]
        left = [
            m for m in mems
            if m.membership in ("leave", "ban") and not m.forgotten and (
                (initial and include_leave) or (since is not None and m.stream_ordering > since)
            )
        ]
        invites = [
            m for m in mems if m.membership == "invite" and (initial or m.stream_ordering > since)
        ]
        lower = since or 0
        bounds = {m.room_id: (lower, position) for m in join_rooms}
        bounds.update({m.room_id: (lower, m.stream_ordering) for m in left})
        timelines = store.recent_events(conn, bounds, limit + 1)

        rooms: dict[str, SyncRoom] = {}
        full_bounds: dict[str, int] = {}
        delta_bounds: dict[str, tuple[int, int]] = {}
        for m in [*join_rooms, *left]:
            timeline = timelines.get(m.room_id, [])
            limited = len(timeline) > limit
            if limited:
                timeline = timeline[len(timeline) - limit:]
            start = timeline[0].stream_ordering if timeline else bounds[m.room_id][1] + 1
            wants_full = initial or full_state or (
                m.membership == "join" and since is not None and m.stream_ordering > since
            )
            rooms[m.room_id] = SyncRoom(m, timeline, limited, [], wants_full)
            if wants_full:
                full_bounds[m.room_id] = start - 1
            elif limited:
                delta_bounds[m.room_id] = (lower, start)
        states = store.state_at_many(conn, {**full_bounds, **{
            r: b[1] - 1 for r, b in delta_bounds.items()}})
        changed = store.state_keys_changed(conn, delta_bounds)
        for room_id, room in rooms.items():
            state = states.get(room_id, [])
            if room_id in delta_bounds:
                keys = changed.get(room_id, set())
                state = [e for e in state if e.key in keys]
            room.state = state
        stripped = store.current_state_of(
            conn, [m.room_id for m in invites], STRIPPED_STATE_TYPES
        )
        invited = [
            (m, [e for e in stripped.get(m.room_id, [])
                 if e.type != "m.room.member" or e.state_key == user_id])
            for m in invites
        ]
        join_ids = [m.room_id for m in join_rooms]
        return SyncRooms(
            position,
            [rooms[m.room_id] for m in join_rooms],
            [rooms[m.room_id] for m in left],
            invited,
            store.member_counts(conn, join_ids),
            store.heroes(conn, join_ids, user_id),
        )

    return await store.snapshot_read(run)
