"""Device keys, one-time and fallback keys, cross-signing keys and signatures, and the
device-list change stream.

Every method is one transaction with a fixed number of set-based statements, whatever the
number of users, devices or keys in the request.

The device-list stream (`device_list_changes`) gets a row for every change of a user's
devices, device keys or cross-signing keys. Positions must become visible in order (a reader
that has seen position N must never later find a new row below N), so writers take a
transaction-scoped lock before allocating positions on PostgreSQL; SQLite writers are
serialized anyway. Only transactions that change the device list take that lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mxkeys.storage.database import Database, dialect_insert
from mxkeys.storage.schema import (
    cross_signing_keys,
    cross_signing_signatures,
    device_keys,
    device_list_changes,
    devices,
    fallback_keys,
    one_time_keys,
    users,
)
from mxkeys.storage.sql import Statement, execute, fetch_all, fetch_one

T = TypeVar("T")

# pg_advisory_xact_lock key serializing device-list stream writers ("dlst").
_DEVICE_LIST_LOCK = 0x646C7374

MASTER = "master"
SELF_SIGNING = "self_signing"
USER_SIGNING = "user_signing"


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewKey:
    """A one-time or fallback key to store: `<algorithm>:<key_id>` and its JSON."""

    algorithm: str
    key_id: str
    key_json: str


_raw_members = msgspec.json.Decoder(dict[str, msgspec.Raw])


class OneTimeKeys:
    """One upload's one-time keys (checked already) as a JSON object, `{"<algorithm>:<key_id>":
    key, ...}`, each key as the client sent it. SQLite stores the whole object with one
    `json_each`, with no Python object per key; `keys` has them one by one, for what needs
    that (PostgreSQL's arrays, comparing keys with those stored already)."""

    __slots__ = ("_keys", "algorithms", "count", "text")

    def __init__(self, text: bytes, count: int, algorithms: set[str]) -> None:
        self.text = text  # the object's JSON, without repeated names
        self.count = count
        self.algorithms = algorithms
        self._keys: list[NewKey] | None = None

    @classmethod
    def of(cls, keys: Sequence[NewKey]) -> OneTimeKeys:
        members = {f"{k.algorithm}:{k.key_id}": msgspec.Raw(k.key_json.encode()) for k in keys}
        made = cls(_json.encode(members), len(members), {k.algorithm for k in keys})
        made._keys = list(keys) if len(members) == len(keys) else None
        return made

    @property
    def keys(self) -> list[NewKey]:
        if self._keys is None:
            self._keys = []
            for name, raw in _raw_members.decode(self.text).items():
                algorithm, _, key_id = name.partition(":")
                self._keys.append(NewKey(algorithm, key_id, bytes(raw).decode()))
        return self._keys


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    user_id: str
    device_id: str
    algorithm: str
    key_id: str
    key_json: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    user_id: str
    usage: str
    key_id: str  # the unpadded-base64 public key
    key_json: str


@dataclass(frozen=True, slots=True)
class Signature:
    target_user_id: str
    target_key_id: str  # a device ID or a master key's public key
    signer_user_id: str
    signing_key_id: str  # e.g. "ed25519:<public key or device ID>"
    signature: str


@dataclass(frozen=True, slots=True)
class QueriedDevice:
    user_id: str
    device_id: str
    display_name: str | None
    key_json: str


@dataclass(slots=True)
class KeyQueryResult:
    existing_users: list[str] = field(default_factory=list)
    devices: list[QueriedDevice] = field(default_factory=list)
    cross_signing_keys: list[CrossSigningKey] = field(default_factory=list)
    # Only those the requester may see (see `query_keys`).
    signatures: list[Signature] = field(default_factory=list)


@dataclass(slots=True)
class SigningContext:
    """What verifying a /keys/signatures/upload request needs, read in one transaction."""

    # The requester's cross-signing keys by usage.
    own_keys: dict[str, CrossSigningKey]
    # The requester's device keys (JSON) by device ID, for the devices named in the request.
    own_devices: dict[str, str]
    # Master keys of the other users named in the request.
    master_keys: dict[str, CrossSigningKey]


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    stream_id: int
    user_id: str
    device_id: str | None  # None: a change of the user's cross-signing keys


class OneTimeKeyConflict(Exception):
    """A one-time key ID already stored with different content (the upload is rolled back)."""

    def __init__(self, key_name: str) -> None:
        super().__init__(key_name)
        self.key_name = key_name


class OneTimeKeyLimit(Exception):
    """An upload would leave more unclaimed one-time keys than allowed (rolled back)."""

    def __init__(self, algorithm: str, count: int, limit: int) -> None:
        super().__init__(algorithm)
        self.algorithm = algorithm
        self.count = count
        self.limit = limit


# -- the device-list stream, usable from other stores' transactions --------------------------


DEVICE_LISTS_CHANGED = "mxkeys.device_lists_changed"
# conn.info key: the (user, device) pairs a transaction deleted (for the commit hooks).
DEVICES_REMOVED = "mxkeys.devices_removed"


def record_device_list_changes(
    conn: Connection, user_id: str, device_ids: Sequence[str | None]
) -> int:
    """Append changes of `user_id` (one row per device; None for cross-signing keys) to the
    device-list stream in the caller's transaction. Returns the last position written."""
    if not device_ids:
        return 0
    # After commit, the database's hook wakes the syncs of everyone sharing a room with them.
    conn.info.setdefault(DEVICE_LISTS_CHANGED, set()).add(user_id)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DEVICE_LIST_LOCK)))
    rows = [{"user_id": user_id, "device_id": d} for d in dict.fromkeys(device_ids)]
    if len(rows) == 1:
        result = conn.execute(
            device_list_changes.insert().values(rows[0]).returning(device_list_changes.c.stream_id)
        )
        return int(result.scalar_one())
    result = conn.execute(
        device_list_changes.insert().returning(device_list_changes.c.stream_id), rows
    )
    return max(int(r.stream_id) for r in result)


def devices_removed(conn: Connection, user_id: str, device_ids: Sequence[str]) -> None:
    """Call in the transaction that deletes devices: records the change on the stream and drops
    the signatures made on those devices (their keys are gone with the device rows)."""
    if not device_ids:
        return
    conn.info.setdefault(DEVICES_REMOVED, set()).update((user_id, d) for d in device_ids)
    conn.execute(
        cross_signing_signatures.delete().where(
            cross_signing_signatures.c.target_user_id == user_id,
            cross_signing_signatures.c.target_key_id.in_(list(device_ids)),
        )
    )
    record_device_list_changes(conn, user_id, list(device_ids))


# A claim takes the oldest unclaimed one-time key of every requested device, in one statement
# however many devices (the request is one JSON parameter on SQLite, arrays on PostgreSQL).
#
# SQLite (writers are serialized): the claim moves each device's claim mark to the key it hands
# out (`one_time_key_claims`, see storage/schema.py) and returns the keys' ids; `_KEYS_BY_ID`
# then reads them. The device's mark is read once per device, before its keys are scanned.
_CLAIM_MARK = Statement(
    """
    WITH r AS MATERIALIZED (
        SELECT json_extract(t.value, '$[0]') AS u, json_extract(t.value, '$[1]') AS d,
               json_extract(t.value, '$[2]') AS a,
               coalesce((SELECT c.claimed_to FROM one_time_key_claims AS c
                         WHERE c.user_id = json_extract(t.value, '$[0]')
                           AND c.device_id = json_extract(t.value, '$[1]')
                           AND c.algorithm = json_extract(t.value, '$[2]')), 0) AS mark
        FROM json_each(:wanted) AS t
    ),
    picked AS (
        SELECT r.u, r.d, r.a, (
            SELECT o.id FROM one_time_keys AS o
            WHERE o.user_id = r.u AND o.device_id = r.d AND o.algorithm = r.a AND o.id > r.mark
            ORDER BY o.id LIMIT 1
        ) AS id
        FROM r
    )
    INSERT INTO one_time_key_claims (user_id, device_id, algorithm, claimed_to)
    SELECT u, d, a, id FROM picked WHERE id IS NOT NULL
    ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET claimed_to = excluded.claimed_to
    RETURNING claimed_to
    """
)
_KEYS_BY_ID = Statement(
    "SELECT o.user_id, o.device_id, o.algorithm, o.key_id, o.key_json "
    "FROM json_each(:ids) AS t JOIN one_time_keys AS o ON o.id = t.value"
)
# PostgreSQL: concurrent claims run in parallel. Each deletes the key it takes, locking the row
# and skipping rows locked by another claim, so two claims never get the same key and a claim
# never comes back empty-handed because another one was faster.
_CLAIM_DELETE = Statement(
    """
    DELETE FROM one_time_keys WHERE id IN (
        SELECT k.id
        FROM unnest(CAST(:users AS text[]), CAST(:devices AS text[]), CAST(:algorithms AS text[]))
            AS r(user_id, device_id, algorithm)
        CROSS JOIN LATERAL (
            SELECT o.id FROM one_time_keys AS o
            WHERE o.user_id = r.user_id AND o.device_id = r.device_id
              AND o.algorithm = r.algorithm
            ORDER BY o.id LIMIT 1
            FOR UPDATE SKIP LOCKED
        ) AS k
    )
    RETURNING user_id, device_id, algorithm, key_id, key_json
    """
)

# Claim marks (SQLite only), and the keys at or below them (handed out already), for deleting
# both.
_MARKS_OF_DEVICE = Statement(
    "SELECT user_id, device_id, algorithm, claimed_to FROM one_time_key_claims "
    "WHERE user_id = :user_id AND device_id = :device_id"
)
_SOME_MARKS = Statement(
    "SELECT user_id, device_id, algorithm, claimed_to FROM one_time_key_claims LIMIT :n"
)
_DELETE_CLAIMED = Statement(
    "DELETE FROM one_time_keys WHERE id IN (SELECT o.id FROM json_each(:marks) AS t "
    "JOIN one_time_keys AS o ON o.user_id = json_extract(t.value, '$[0]') "
    "AND o.device_id = json_extract(t.value, '$[1]') "
    "AND o.algorithm = json_extract(t.value, '$[2]') AND o.id <= json_extract(t.value, '$[3]'))"
)
# (Only marks that have not moved since they were read.)
_DELETE_MARKS = Statement(
    "DELETE FROM one_time_key_claims WHERE (user_id, device_id, algorithm, claimed_to) IN "
    "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(:marks))"
)


# The fallback keys of the devices left without a one-time key: handed out, kept, marked used.
_CLAIM_FALLBACK = Statement(
    # SQLite
    """
    UPDATE fallback_keys SET used = true
    WHERE (user_id, device_id, algorithm) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
               json_extract(value, '$[2]')
        FROM json_each(:wanted)
    )
    RETURNING user_id, device_id, algorithm, key_id, key_json
    """,
    # PostgreSQL
    """
    UPDATE fallback_keys SET used = true
    WHERE (user_id, device_id, algorithm) IN (
        SELECT * FROM unnest(CAST(:users AS text[]), CAST(:devices AS text[]),
                             CAST(:algorithms AS text[]))
    )
    RETURNING user_id, device_id, algorithm, key_id, key_json
    """,
)

# Uploads insert all their one-time keys with one statement and few parameters. On SQLite the
# parameter is the upload's object itself: `json_each` gives each member's name and its value
# (an object as compact JSON text, a string unquoted, hence `json_quote`).
_INSERT_OTKS = Statement(
    # SQLite
    """
    INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
    SELECT :user_id, :device_id, substr(key, 1, instr(key, ':') - 1),
           substr(key, instr(key, ':') + 1), iif(type = 'text', json_quote(value), value)
    FROM json_each(:keys) WHERE true
    ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING
    """,
    # PostgreSQL
    """
    INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
    SELECT :user_id, :device_id, a, k, j
    FROM unnest(CAST(:algorithms AS text[]), CAST(:key_ids AS text[]),
                CAST(:key_jsons AS text[])) AS t(a, k, j)
    ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING
    RETURNING algorithm, key_id
    """,
)
_COUNT_OTKS = Statement(
    """
    SELECT algorithm, count(*) FROM one_time_keys
    WHERE user_id = :user_id AND device_id = :device_id
    GROUP BY algorithm
    """
)
# The same for a device with claim marks: only the keys above its marks.
_COUNT_OTKS_ABOVE_MARKS = Statement(
    """
    SELECT o.algorithm, count(*) FROM one_time_keys AS o
    LEFT JOIN one_time_key_claims AS c
      ON c.user_id = o.user_id AND c.device_id = o.device_id AND c.algorithm = o.algorithm
    WHERE o.user_id = :user_id AND o.device_id = :device_id AND o.id > coalesce(c.claimed_to, 0)
    GROUP BY o.algorithm
    """
)
_json = msgspec.json.Encoder()


def _in_list(dialect: str, param: str) -> str:
    """SQL for "IN the list bound as :param": a JSON array on SQLite, an array on PostgreSQL.
    One parameter however long the list, so no statement grows with the request."""
    if dialect == "postgresql":
        return f"(SELECT unnest(CAST(:{param} AS text[])))"
    return f"(SELECT value FROM json_each(:{param}))"


def _query_texts(dialect: str) -> tuple[str, ...]:
    """The four statements of `query_keys`, in one dialect."""
    users_in = _in_list(dialect, "users")
    if dialect == "postgresql":
        pairs = "SELECT * FROM unnest(CAST(:pair_users AS text[]), CAST(:pair_devices AS text[]))"
    else:
        pairs = (
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:pairs)"
        )
    return (
        f"SELECT user_id FROM users WHERE user_id IN {users_in}",
        f"""
            SELECT k.user_id, k.device_id, d.display_name, k.key_json
            FROM device_keys AS k
            JOIN devices AS d ON d.user_id = k.user_id AND d.device_id = k.device_id
            WHERE k.user_id IN {_in_list(dialect, "all_of")}
               OR (k.user_id, k.device_id) IN ({pairs})
            """,
        f"""
            SELECT user_id, usage, key_id, key_json FROM cross_signing_keys
            WHERE user_id IN {users_in}
              AND (usage != '{USER_SIGNING}' OR user_id = :requester)
            """,
        # Signatures the requester may see: made by the key's owner, or by the requester.
        f"""
            SELECT target_user_id, target_key_id, signer_user_id, signing_key_id, signature
            FROM cross_signing_signatures
            WHERE target_user_id IN {users_in}
              AND (signer_user_id = target_user_id OR signer_user_id = :requester)
            """,
    )


_QUERY = tuple(
    Statement(sqlite, postgresql)
    for sqlite, postgresql in zip(_query_texts("sqlite"), _query_texts("postgresql"), strict=True)
)


def count_unclaimed_one_time_keys(
    conn: Connection, user_id: str, device_id: str, marked: bool | None = None
) -> dict[str, int]:
    """A device's unclaimed one-time keys per algorithm (what /sync and /keys/upload report).
    `marked`: whether the device has claim marks, if the caller knows (else looked up)."""
    params = {"user_id": user_id, "device_id": device_id}
    if marked is None:
        marked = conn.dialect.name == "sqlite" and bool(fetch_one(conn, _MARKS_OF_DEVICE, params))
    rows = fetch_all(conn, _COUNT_OTKS_ABOVE_MARKS if marked else _COUNT_OTKS, params)
    return {algorithm: int(n) for algorithm, n in rows}


def delete_claimed_keys(conn: Connection, marks: Sequence[tuple[str, str, str, int]]) -> int:
    """Delete the one-time keys at or below these claim marks (user, device, algorithm, id),
    and the marks themselves (SQLite); the number of keys deleted."""
    if not marks:
        return 0
    params = {"marks": _json.encode(list(marks)).decode()}
    deleted = execute(conn, _DELETE_CLAIMED, params)
    execute(conn, _DELETE_MARKS, params)
    return deleted


class _WriteFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


# How many waiting uploads one group-commit transaction takes at most.
_MAX_BATCH = 64


class _GroupCommit:
    """Runs concurrent writes of the same kind together in one transaction (SQLite).

    SQLite has one writer at a time and every commit costs a WAL write, so with many devices
    uploading keys at once the commits, not the statements, would set the pace. Writes that
    arrive while a transaction runs queue up and go together into the next one. A request
    still gets its answer only after its commit.

    Each write stays atomic on its own: when one fails (a conflicting key, the key cap), the
    transaction is rolled back and the batch runs again with every write inside its own
    SAVEPOINT, so the failing one is undone alone and fails alone while the others commit.
    (Failures are rare; savepoints in the common case would cost more than the retry.)
    The writes must therefore be safe to run again: they are plain functions of the database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[[Connection], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[:_MAX_BATCH]
            del self._pending[:_MAX_BATCH]
            try:
                try:
                    outcomes = await self.db.write(lambda conn, b=batch: self._run(conn, b))
                except _WriteFailed as failed:
                    if len(batch) == 1:
                        raise failed.error from None
                    outcomes = await self.db.write(
                        lambda conn, b=batch: self._run_isolated(conn, b)
                    )
            except Exception as e:  # the transaction itself failed: so did every write in it
                outcomes = [e] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    @staticmethod
    def _run(
        conn: Connection, batch: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        outcomes: list[Any] = []
        for fn, _ in batch:
            try:
                outcomes.append(fn(conn))
            except Exception as e:
                raise _WriteFailed(e) from e  # roll everything back
        return outcomes

    @staticmethod
    def _run_isolated(
        conn: Connection, batch: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        outcomes: list[Any] = []
        for fn, _ in batch:
            # A write undone must not wake anybody either: restore the commit-hook notes.
            changed = set(conn.info.get(DEVICE_LISTS_CHANGED, ()))
            savepoint = conn.begin_nested()
            try:
                outcomes.append(fn(conn))
            except Exception as e:
                savepoint.rollback()
                if changed:
                    conn.info[DEVICE_LISTS_CHANGED] = changed
                else:
                    conn.info.pop(DEVICE_LISTS_CHANGED, None)
                outcomes.append(e)
            else:
                savepoint.commit()
        return outcomes


class DeviceKeysStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._upload_batcher = _GroupCommit(db) if db.dialect == "sqlite" else None

    def _triples_param(self, triples: list[tuple[str, str, str]]) -> dict[str, object]:
        if self.db.dialect == "postgresql":
            return {
                "users": [t[0] for t in triples],
                "devices": [t[1] for t in triples],
                "algorithms": [t[2] for t in triples],
            }
        return {"wanted": json.dumps(triples)}

    def _list_param(self, values: list[str]) -> object:
        """A list of strings as ONE bound parameter (see `_in_list`)."""
        return values if self.db.dialect == "postgresql" else _json.encode(values).decode()

    # -- upload ---------------------------------------------------------------------------

    async def upload_keys(
        self,
        user_id: str,
        device_id: str,
        device_keys_json: str | None,
        new_one_time_keys: OneTimeKeys | None,
        new_fallback_keys: Sequence[NewKey],
        max_one_time_keys: int,
        same_key: Callable[[str, str], bool],
    ) -> dict[str, int]:
        """Store a device's keys atomically; return its unclaimed one-time key counts.

        Re-uploading a stored one-time key is a no-op when `same_key(stored, new)` holds, else
        `OneTimeKeyConflict`. More than `max_one_time_keys` unclaimed keys of an algorithm the
        request adds to raises `OneTimeKeyLimit`. Either rolls everything back.
        """

        def apply(conn: Connection) -> dict[str, int]:
            if self.db.is_sqlite:
                # Keys handed out by claims go first: a key ID may then be uploaded again.
                params = {"user_id": user_id, "device_id": device_id}
                delete_claimed_keys(conn, fetch_all(conn, _MARKS_OF_DEVICE, params))
            if device_keys_json is not None:
                self._set_device_keys(conn, user_id, device_id, device_keys_json)
            added: set[str] = set()
            if new_one_time_keys is not None and new_one_time_keys.count:
                added = self._add_one_time_keys(
                    conn, user_id, device_id, new_one_time_keys, same_key
                )
            if new_fallback_keys:
                self._set_fallback_keys(conn, user_id, device_id, new_fallback_keys)
            # (Any claim marks of the device went with its claimed keys above.)
            counts = count_unclaimed_one_time_keys(conn, user_id, device_id, marked=False)
            for algorithm in added:
                if counts.get(algorithm, 0) > max_one_time_keys:
                    raise OneTimeKeyLimit(algorithm, counts[algorithm], max_one_time_keys)
            return counts

        if self._upload_batcher is not None:
            return await self._upload_batcher.submit(apply)
        return await self.db.write(apply)

    def _set_device_keys(
        self, conn: Connection, user_id: str, device_id: str, key_json: str
    ) -> None:
        stmt = dialect_insert(self.db.dialect, device_keys).values(
            user_id=user_id, device_id=device_id, key_json=key_json
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "device_id"],
            set_={"key_json": stmt.excluded.key_json},
            where=device_keys.c.key_json != stmt.excluded.key_json,
        ).returning(device_keys.c.device_id)
        if conn.execute(stmt).first() is None:
            return  # identical to what is stored: nothing changed
        # New keys: signatures made on the old ones no longer apply.
        conn.execute(
            cross_signing_signatures.delete().where(
                cross_signing_signatures.c.target_user_id == user_id,
                cross_signing_signatures.c.target_key_id == device_id,
            )
        )
        record_device_list_changes(conn, user_id, [device_id])

    def _add_one_time_keys(
        self,
        conn: Connection,
        user_id: str,
        device_id: str,
        new: OneTimeKeys,
        same_key: Callable[[str, str], bool],
    ) -> set[str]:
        """Insert the keys not stored yet; returns the algorithms that got new keys."""
        params: dict[str, object] = {"user_id": user_id, "device_id": device_id}
        if self.db.dialect == "postgresql":
            keys = new.keys
            params["algorithms"] = [k.algorithm for k in keys]
            params["key_ids"] = [k.key_id for k in keys]
            params["key_jsons"] = [k.key_json for k in keys]
            inserted = {(r[0], r[1]) for r in fetch_all(conn, _INSERT_OTKS, params)}
            if len(inserted) == len(keys):
                return {a for a, _ in inserted}
            already = [k for k in keys if (k.algorithm, k.key_id) not in inserted]
            added = {a for a, _ in inserted}
        else:
            # SQLite's row count is exact (the driver's is not trusted on PostgreSQL), and
            # skipping RETURNING spares reading back every row.
            params["keys"] = new.text.decode()
            count = execute(conn, _INSERT_OTKS, params)
            if count == new.count:
                return new.algorithms
            # Some were there already: compare them all; the ones inserted just now compare
            # equal to themselves (as SQLite stored them: `same_key` compares their content).
            already = new.keys
            added = new.algorithms if count else set()
        query = sa.select(
            one_time_keys.c.algorithm, one_time_keys.c.key_id, one_time_keys.c.key_json
        ).where(
            one_time_keys.c.user_id == user_id,
            one_time_keys.c.device_id == device_id,
            sa.tuple_(one_time_keys.c.algorithm, one_time_keys.c.key_id).in_(
                [(k.algorithm, k.key_id) for k in already]
            ),
        )
        stored = {(r.algorithm, r.key_id): r.key_json for r in conn.execute(query)}
        for k in already:
            old = stored.get((k.algorithm, k.key_id))
            # (Absent: claimed by a concurrent request since the insert; nothing to compare.)
            if old is not None and old != k.key_json and not same_key(old, k.key_json):
                raise OneTimeKeyConflict(f"{k.algorithm}:{k.key_id}")
        return added

    def _set_fallback_keys(
        self, conn: Connection, user_id: str, device_id: str, keys: Sequence[NewKey]
    ) -> None:
        stmt = dialect_insert(self.db.dialect, fallback_keys)
        # Re-uploading the current key keeps its `used` flag (as Synapse does); a new key
        # replaces the old one and starts unused.
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "device_id", "algorithm"],
            set_={
                "key_id": stmt.excluded.key_id,
                "key_json": stmt.excluded.key_json,
                "used": sa.false(),
            },
            where=sa.or_(
                fallback_keys.c.key_id != stmt.excluded.key_id,
                fallback_keys.c.key_json != stmt.excluded.key_json,
            ),
        )
        conn.execute(
            stmt,
            [
                {
                    "user_id": user_id,
                    "device_id": device_id,
                    "algorithm": k.algorithm,
                    "key_id": k.key_id,
                    "key_json": k.key_json,
                    "used": False,
                }
                for k in keys
            ],
        )

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        return await self.db.read(
            lambda conn: count_unclaimed_one_time_keys(conn, user_id, device_id)
        )

    async def delete_claimed_keys(self, batch: int = 1000) -> int:
        """Delete every claimed one-time key still stored (housekeeping), `batch` devices per
        transaction; the number of keys deleted. (PostgreSQL claims delete as they go.)"""
        if not self.db.is_sqlite:
            return 0
        total = 0
        while True:

            def txn(conn: Connection) -> tuple[int, int]:
                marks = fetch_all(conn, _SOME_MARKS, {"n": batch})
                return len(marks), delete_claimed_keys(conn, marks)

            found, deleted = await self.db.write(txn)
            total += deleted
            if found < batch:
                return total

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """Algorithms whose fallback key has not been handed out yet (for /sync)."""

        def txn(conn: Connection) -> list[str]:
            query = (
                sa.select(fallback_keys.c.algorithm)
                .where(
                    fallback_keys.c.user_id == user_id,
                    fallback_keys.c.device_id == device_id,
                    fallback_keys.c.used == sa.false(),
                )
                .order_by(fallback_keys.c.algorithm)
            )
            return list(conn.execute(query).scalars())

        return await self.db.read(txn)

    # -- query ----------------------------------------------------------------------------

    async def query_keys(
        self,
        requester: str,
        all_devices_of: Sequence[str],
        some_devices: Sequence[tuple[str, str]],
    ) -> KeyQueryResult:
        """Device keys of every device of `all_devices_of` users plus the `(user, device)`
        pairs, the cross-signing keys of all those users (the user-signing key only for the
        requester), and the uploaded signatures on them that the requester may see: those
        made by the key owner's own keys or devices, or by the requester. (Signatures made by
        another user's user-signing key are private to that user.) Also which of the users
        exist. Four statements."""
        users_queried = list(dict.fromkeys([*all_devices_of, *(u for u, _ in some_devices)]))

        params: dict[str, object] = {
            "requester": requester,
            "users": self._list_param(users_queried),
            "all_of": self._list_param(list(all_devices_of)),
        }
        if self.db.dialect == "postgresql":
            params["pair_users"] = [u for u, _ in some_devices]
            params["pair_devices"] = [d for _, d in some_devices]
        else:
            params["pairs"] = _json.encode(list(some_devices)).decode()

        def txn(conn: Connection) -> KeyQueryResult:
            result = KeyQueryResult()
            if not users_queried:
                return result
            result.devices = [QueriedDevice(*row) for row in fetch_all(conn, _QUERY[1], params)]
            result.cross_signing_keys = [
                CrossSigningKey(*row) for row in fetch_all(conn, _QUERY[2], params)
            ]
            result.signatures = [Signature(*row) for row in fetch_all(conn, _QUERY[3], params)]
            # Users with devices exist; ask only about the others.
            with_devices = {d.user_id for d in result.devices}
            others = [u for u in users_queried if u not in with_devices]
            result.existing_users = list(with_devices)
            if others:
                rows = fetch_all(conn, _QUERY[0], {"users": self._list_param(others)})
                result.existing_users.extend(row[0] for row in rows)
            return result

        return await self.db.read(txn)

    # -- claim ----------------------------------------------------------------------------

    async def claim_keys(self, wanted: Sequence[tuple[str, str, str]]) -> list[ClaimedKey]:
        """One key per `(user, device, algorithm)`: the oldest unclaimed one-time key (never
        handed out again) or else the fallback key (kept, marked used). Devices with neither
        are left out. A few statements in one transaction, whatever the request size."""
        wanted = list(dict.fromkeys(wanted))

        def txn(conn: Connection) -> list[ClaimedKey]:
            if not wanted:
                return []
            if self.db.is_sqlite:
                ids = [row[0] for row in fetch_all(conn, _CLAIM_MARK, self._triples_param(wanted))]
                rows = fetch_all(conn, _KEYS_BY_ID, {"ids": _json.encode(ids).decode()})
            else:
                rows = fetch_all(conn, _CLAIM_DELETE, self._triples_param(wanted))
            claimed = [ClaimedKey(*row, fallback=False) for row in rows]
            got = {(c.user_id, c.device_id, c.algorithm) for c in claimed}
            rest = [w for w in wanted if w not in got]
            if rest:
                rows = fetch_all(conn, _CLAIM_FALLBACK, self._triples_param(rest))
                claimed.extend(ClaimedKey(*row, fallback=True) for row in rows)
            return claimed

        return await self.db.write(txn)

    # -- cross-signing ----------------------------------------------------------------------

    async def get_cross_signing_state(
        self, user_id: str, public_keys: Collection[str]
    ) -> tuple[dict[str, CrossSigningKey], set[str]]:
        """The user's cross-signing keys by usage, and which of `public_keys` are also IDs of
        the user's devices."""

        def txn(conn: Connection) -> tuple[dict[str, CrossSigningKey], set[str]]:
            query = sa.select(
                cross_signing_keys.c.user_id,
                cross_signing_keys.c.usage,
                cross_signing_keys.c.key_id,
                cross_signing_keys.c.key_json,
            ).where(cross_signing_keys.c.user_id == user_id)
            keys = {row.usage: CrossSigningKey(*row) for row in conn.execute(query)}
            clashes: set[str] = set()
            if public_keys:
                query = sa.select(devices.c.device_id).where(
                    devices.c.user_id == user_id, devices.c.device_id.in_(list(public_keys))
                )
                clashes = set(conn.execute(query).scalars())
            return keys, clashes

        return await self.db.read(txn)

    async def set_cross_signing_keys(
        self, user_id: str, keys: Sequence[CrossSigningKey], expected_master_json: str | None
    ) -> bool:
        """Store (replace) cross-signing keys, only if the user's master key is still
        `expected_master_json` (None: no master key). False, writing nothing, otherwise:
        the caller decided on authentication against a state that has since changed."""

        def txn(conn: Connection) -> bool:
            lock = sa.select(users.c.user_id).where(users.c.user_id == user_id)
            if self.db.dialect == "postgresql":
                lock = lock.with_for_update()  # serialize uploads of one user
            conn.execute(lock)
            query = sa.select(cross_signing_keys.c.key_id, cross_signing_keys.c.key_json).where(
                cross_signing_keys.c.user_id == user_id, cross_signing_keys.c.usage == MASTER
            )
            current = conn.execute(query).first()
            if (current.key_json if current else None) != expected_master_json:
                return False
            if not keys:
                return True
            stmt = dialect_insert(self.db.dialect, cross_signing_keys)
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id", "usage"],
                set_={"key_id": stmt.excluded.key_id, "key_json": stmt.excluded.key_json},
            )
            conn.execute(
                stmt,
                [
                    {
                        "user_id": user_id,
                        "usage": k.usage,
                        "key_id": k.key_id,
                        "key_json": k.key_json,
                    }
                    for k in keys
                ],
            )
            new_master = next((k for k in keys if k.usage == MASTER), None)
            if (
                current is not None
                and new_master is not None
                and new_master.key_id != current.key_id
            ):
                # Signatures on the replaced master key are of no further use.
                conn.execute(
                    cross_signing_signatures.delete().where(
                        cross_signing_signatures.c.target_user_id == user_id,
                        cross_signing_signatures.c.target_key_id == current.key_id,
                    )
                )
            record_device_list_changes(conn, user_id, [None])
            return True

        return await self.db.write(txn)

    async def get_signing_context(
        self, user_id: str, own_device_ids: Collection[str], other_user_ids: Collection[str]
    ) -> SigningContext:
        def txn(conn: Connection) -> SigningContext:
            c = cross_signing_keys.c
            query = sa.select(c.user_id, c.usage, c.key_id, c.key_json).where(
                sa.or_(
                    c.user_id == user_id,
                    sa.and_(c.user_id.in_(list(other_user_ids)), c.usage == MASTER),
                )
            )
            own: dict[str, CrossSigningKey] = {}
            masters: dict[str, CrossSigningKey] = {}
            for row in conn.execute(query):
                key = CrossSigningKey(*row)
                if key.user_id == user_id:
                    own[key.usage] = key
                else:
                    masters[key.user_id] = key
            own_devices: dict[str, str] = {}
            if own_device_ids:
                query = sa.select(device_keys.c.device_id, device_keys.c.key_json).where(
                    device_keys.c.user_id == user_id,
                    device_keys.c.device_id.in_(list(own_device_ids)),
                )
                own_devices = {row.device_id: row.key_json for row in conn.execute(query)}
            return SigningContext(own, own_devices, masters)

        return await self.db.read(txn)

    async def store_signatures(
        self, signatures: Sequence[Signature], changed_user_ids: Sequence[str]
    ) -> None:
        """Store (replace) signatures; record a device-list change for `changed_user_ids`."""

        def txn(conn: Connection) -> None:
            if signatures:
                stmt = dialect_insert(self.db.dialect, cross_signing_signatures)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[
                        "target_user_id",
                        "target_key_id",
                        "signer_user_id",
                        "signing_key_id",
                    ],
                    set_={"signature": stmt.excluded.signature},
                )
                conn.execute(
                    stmt,
                    [
                        {
                            "target_user_id": s.target_user_id,
                            "target_key_id": s.target_key_id,
                            "signer_user_id": s.signer_user_id,
                            "signing_key_id": s.signing_key_id,
                            "signature": s.signature,
                        }
                        for s in signatures
                    ],
                )
            for user_id in dict.fromkeys(changed_user_ids):
                record_device_list_changes(conn, user_id, [None])

        await self.db.write(txn)

    # -- device-list stream -------------------------------------------------------------------

    async def current_device_list_position(self) -> int:
        """The newest position on the device-list stream (0 when empty)."""

        def txn(conn: Connection) -> int:
            query = sa.select(sa.func.max(device_list_changes.c.stream_id))
            return int(conn.execute(query).scalar() or 0)

        return await self.db.read(txn)

    async def get_device_list_changes(
        self, from_pos: int, to_pos: int, user_ids: Collection[str] | None = None
    ) -> list[DeviceListChange]:
        """Changes with `from_pos < position <= to_pos`, oldest first, of `user_ids` (all
        users when None)."""

        def txn(conn: Connection) -> list[DeviceListChange]:
            c = device_list_changes.c
            query = (
                sa.select(c.stream_id, c.user_id, c.device_id)
                .where(c.stream_id > from_pos, c.stream_id <= to_pos)
                .order_by(c.stream_id)
            )
            if user_ids is not None:
                if not user_ids:
                    return []
                query = query.where(c.user_id.in_(list(user_ids)))
            return [DeviceListChange(int(r[0]), r[1], r[2]) for r in conn.execute(query)]

        return await self.db.read(txn)
