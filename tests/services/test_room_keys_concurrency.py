"""Racing key-backup writes: parallel uploads, and uploads racing a new version.

The storage thread pool runs the transactions really in parallel (on PostgreSQL they
interleave; SQLite serializes writers), so these fail without the per-user serialization.
"""

from __future__ import annotations

import asyncio
import random

import sqlalchemy as sa

from mxkeys.errors import MatrixError
from mxkeys.homeserver import HomeServer
from mxkeys.services.room_keys import MEGOLM_BACKUP_V1, should_replace
from mxkeys.storage.room_keys import NewRoomKey
from mxkeys.storage.schema import room_key_versions, room_keys


def rows_per_version(hs: HomeServer, user_id: str) -> dict[int, tuple[int, int]]:
    """{version: (rows really stored, key_count recorded)}."""

    def txn(conn: sa.Connection) -> dict[int, tuple[int, int]]:
        counts = dict(
            conn.execute(
                sa.select(room_keys.c.version, sa.func.count())
                .where(room_keys.c.user_id == user_id)
                .group_by(room_keys.c.version)
            ).all()
        )
        recorded = conn.execute(
            sa.select(room_key_versions.c.version, room_key_versions.c.key_count).where(
                room_key_versions.c.user_id == user_id
            )
        ).all()
        return {v: (counts.get(v, 0), n) for v, n in recorded}

    return hs.db.run_sync(txn, write=False)


def sessions_in(hs: HomeServer, user_id: str, version: int) -> set[str]:
    def txn(conn: sa.Connection) -> set[str]:
        query = sa.select(room_keys.c.session_id).where(
            room_keys.c.user_id == user_id, room_keys.c.version == version
        )
        return set(conn.execute(query).scalars())

    return hs.db.run_sync(txn, write=False)


def test_parallel_overlapping_uploads_count_exactly(homeserver: HomeServer) -> None:
    hs = homeserver
    user_id = "@racer:x"
    rng = random.Random(7)

    async def scenario() -> None:
        await hs.storage.accounts.create_user(user_id, None, False, 0)
        version = await hs.room_keys.create_version(user_id, MEGOLM_BACKUP_V1, "{}")
        uploads = [
            [
                NewRoomKey(
                    f"!r{s % 4}:x",
                    f"s{s}",
                    rng.randint(0, 3),
                    rng.randint(0, 3),
                    rng.random() < 0.5,
                    f'{{"u":{u}}}',
                )
                for s in rng.sample(range(60), 30)
            ]
            for u in range(16)
        ]
        results = await asyncio.gather(
            *(hs.room_keys.upload_keys(user_id, version, keys) for keys in uploads)
        )
        # The best key per session under the rule, whatever order the uploads ran in
        # (ties keep the stored one, so compare metadata only).
        best: dict[tuple[str, str], NewRoomKey] = {}
        for keys in uploads:
            for k in keys:
                current = best.get((k.room_id, k.session_id))
                if current is None or should_replace(current, k):
                    best[(k.room_id, k.session_id)] = k
        info = await hs.room_keys.get_version(user_id, version)
        assert info.count == len(best)
        assert max(int(etag) for etag, _ in results) == info.etag
        for (room, session), expected in best.items():
            stored = await hs.room_keys.get_key(user_id, version, room, session)
            assert (stored.first_message_index, stored.forwarded_count, stored.is_verified) == (
                expected.first_message_index,
                expected.forwarded_count,
                expected.is_verified,
            )
        # Each response's count is the count after that upload: all distinct, increasing
        # with the etag.
        ordered = sorted((int(etag), count) for etag, count in results)
        assert [c for _, c in ordered] == sorted(c for _, c in ordered)

    asyncio.run(scenario())
    assert all(real == recorded for real, recorded in rows_per_version(hs, user_id).values())


def test_uploads_racing_new_versions(homeserver: HomeServer) -> None:
    """Uploads to v1 race the creation of v2 and v3: each upload either lands entirely in
    v1 (and was accepted before v2 existed) or fails with M_WRONG_ROOM_KEYS_VERSION and
    stores nothing anywhere; the counts match the rows."""
    hs = homeserver
    user_id = "@versionracer:x"

    async def scenario() -> None:
        await hs.storage.accounts.create_user(user_id, None, False, 0)
        assert await hs.room_keys.create_version(user_id, MEGOLM_BACKUP_V1, "{}") == "1"
        created: list[str] = []

        async def upload(n: int) -> tuple[int, bool]:
            await asyncio.sleep(random.random() * 0.02)
            keys = [NewRoomKey("!r:x", f"u{n}-{i}", 0, 0, False, "{}") for i in range(20)]
            try:
                await hs.room_keys.upload_keys(user_id, "1", keys)
            except MatrixError as e:
                assert e.errcode == "M_WRONG_ROOM_KEYS_VERSION", e
                assert e.extra["current_version"] in ("2", "3")
                return n, False
            return n, True

        async def new_version() -> None:
            await asyncio.sleep(0.01)
            created.append(await hs.room_keys.create_version(user_id, MEGOLM_BACKUP_V1, "{}"))
            created.append(await hs.room_keys.create_version(user_id, MEGOLM_BACKUP_V1, "{}"))

        outcomes = await asyncio.gather(new_version(), *(upload(n) for n in range(40)))
        accepted = {n for n, ok in outcomes[1:] if ok}
        assert created == ["2", "3"]
        assert sessions_in(hs, user_id, 1) == {f"u{n}-{i}" for n in accepted for i in range(20)}
        assert sessions_in(hs, user_id, 2) == set() and sessions_in(hs, user_id, 3) == set()
        # Once v2 exists nothing more is accepted into v1.
        late = await upload(999)
        assert late == (999, False)

    asyncio.run(scenario())
    for real, recorded in rows_per_version(hs, user_id).values():
        assert real == recorded
