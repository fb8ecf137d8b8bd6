"""The key-backup merge rule, as a property against a plain model of the spec's wording.

Spec ("Server-side key backups"): if the keys differ in `is_verified`, keep the verified one;
if equal, keep the lower `first_message_index`; if that is equal too, keep the lower
`forwarded_count`; otherwise the stored key stays.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxkeys.homeserver import HomeServer
from mxkeys.services.room_keys import MEGOLM_BACKUP_V1, should_replace
from mxkeys.storage.room_keys import NewRoomKey

MAX = 2**53 - 1


@dataclass(frozen=True)
class Meta:
    first_message_index: int
    forwarded_count: int
    is_verified: bool


def model_keeps_uploaded(stored: Meta, uploaded: Meta) -> bool:
    """The spec's rule as a ranking: verified first, then lower index, then lower count;
    the uploaded key wins only when it ranks strictly better."""

    def rank(k: Meta) -> tuple[int, int, int]:
        return (0 if k.is_verified else 1, k.first_message_index, k.forwarded_count)

    return rank(uploaded) < rank(stored)


# Small values collide often (the interesting cases); large ones check the range.
counters = st.one_of(st.integers(0, 3), st.integers(0, MAX))
metas = st.builds(Meta, counters, counters, st.booleans())


@given(metas, metas)
def test_should_replace_matches_the_spec(stored: Meta, uploaded: Meta) -> None:
    assert should_replace(stored, uploaded) == model_keeps_uploaded(stored, uploaded)


def test_should_replace_examples() -> None:
    # Verified beats unverified whatever the index says (Synapse would disagree here).
    assert not should_replace(Meta(9, 9, True), Meta(0, 0, False))
    assert should_replace(Meta(0, 0, False), Meta(9, 9, True))
    assert should_replace(Meta(5, 0, False), Meta(4, 9, False))
    assert should_replace(Meta(4, 3, True), Meta(4, 2, True))
    assert not should_replace(Meta(4, 2, True), Meta(4, 2, True))


_users = itertools.count()


def _new_user(hs: HomeServer) -> str:
    user_id = f"@merge{next(_users)}-{id(hs)}:x"
    asyncio.run(hs.storage.accounts.create_user(user_id, None, False, 0))
    return user_id


def _key(session: str, meta: Meta, tag: str) -> NewRoomKey:
    return NewRoomKey(
        "!room:x",
        session,
        meta.first_message_index,
        meta.forwarded_count,
        meta.is_verified,
        f'{{"tag":"{tag}"}}',
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.lists(metas, min_size=1, max_size=4), min_size=1, max_size=5))
def test_stored_keys_follow_the_rule_through_the_database(
    homeserver: HomeServer, uploads: list[list[Meta]]
) -> None:
    """Upload rounds of keys for a few sessions through the service and storage (one batch
    per round); after each round the stored key of every session is the one the model
    keeps, `count` is the number of sessions and the etag moved iff something changed."""
    hs = homeserver
    user_id = _new_user(hs)

    async def scenario() -> None:
        version = await hs.room_keys.create_version(user_id, MEGOLM_BACKUP_V1, "{}")
        expected: dict[str, tuple[Meta, str]] = {}
        etag = (await hs.room_keys.get_version(user_id, version)).etag
        for round_no, round_metas in enumerate(uploads):
            batch = []
            changed = False
            for index, meta in enumerate(round_metas):
                session = f"s{index}"
                tag = f"{round_no}-{index}"
                batch.append(_key(session, meta, tag))
                current = expected.get(session)
                if current is None or model_keeps_uploaded(current[0], meta):
                    expected[session] = (meta, tag)
                    changed = True
            new_etag, count = await hs.room_keys.upload_keys(user_id, version, batch)
            assert count == len(expected)
            assert (str(new_etag) != str(etag)) == changed
            etag = int(new_etag)
            for session, (meta, tag) in expected.items():
                stored = await hs.room_keys.get_key(user_id, version, "!room:x", session)
                assert (
                    stored.first_message_index,
                    stored.forwarded_count,
                    stored.is_verified,
                ) == (meta.first_message_index, meta.forwarded_count, meta.is_verified)
                assert stored.session_data == f'{{"tag":"{tag}"}}'

    asyncio.run(scenario())
