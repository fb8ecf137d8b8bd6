"""`services.to_device.RecentSends`: syncs woken by a send are answered from memory, and the
answer is always the one the database would give."""

from __future__ import annotations

import asyncio

from mxkeys.homeserver import HomeServer
from mxkeys.ids import now_ms
from mxkeys.services.auth import Requester
from mxkeys.services.to_device import RecentSends
from mxkeys.storage.accounts import NewLogin
from mxkeys.storage.to_device import InboxMessage, OutgoingMessage, SentMessages

ALICE = "@alice:localhost"
BOB = "@bob:localhost"


def test_answers_only_when_it_holds_every_position_after_the_cursor() -> None:
    recent = RecentSends(max_sends=3)
    recent.add(SentMessages(11, [(BOB, "B1", "{}"), (BOB, "B2", "{}")]), ALICE, "m.x")
    recent.add(SentMessages(13, [(BOB, "B1", '{"n":2}')]), ALICE, "m.y")
    assert recent.pending(BOB, "B1", 10, 100) == (13, [
        InboxMessage(11, ALICE, "m.x", "{}"), InboxMessage(13, ALICE, "m.y", '{"n":2}'),
    ])
    assert recent.pending(BOB, "B2", 12, 100) == (13, [])  # its message was at 12
    assert recent.pending(BOB, "B1", 12, 100) == (13, [InboxMessage(13, ALICE, "m.y", '{"n":2}')])
    assert recent.pending(BOB, "B1", 9, 100) is None  # position 10 is not held
    assert recent.pending(BOB, "B1", 13, 100) is None  # nothing newer: ask the database
    assert recent.pending(BOB, "B1", 10, 1) is None  # more than a response holds
    # A gap (positions another process handed out) starts the history over.
    recent.add(SentMessages(20, [(BOB, "B1", "{}")]), ALICE, "m.x")
    assert recent.pending(BOB, "B1", 12, 100) is None
    assert recent.pending(BOB, "B1", 19, 100) == (20, [InboxMessage(20, ALICE, "m.x", "{}")])
    # Only the newest sends are kept.
    for first in range(21, 25):
        recent.add(SentMessages(first, [(BOB, "B2", "{}")]), ALICE, "m.x")
    assert recent.pending(BOB, "B1", 19, 100) is None
    assert recent.pending(BOB, "B2", 21, 100) == (24, [
        InboxMessage(22, ALICE, "m.x", "{}"), InboxMessage(23, ALICE, "m.x", "{}"),
        InboxMessage(24, ALICE, "m.x", "{}"),
    ])


def test_the_same_answer_as_the_database(homeserver: HomeServer) -> None:
    hs = homeserver
    service = hs.to_device
    devices = [(BOB, "B1"), (BOB, "B2"), (ALICE, "A1")]

    async def scenario() -> None:
        for user_id, device_id in [(ALICE, "A1"), (BOB, "B1")]:
            await hs.storage.accounts.create_user(
                user_id, None, False, now_ms(), NewLogin(device_id, None, f"h{device_id}")
            )
        await hs.storage.accounts.add_login(BOB, NewLogin("B2", None, "hB2"), now_ms())
        alice = Requester(ALICE, "A1", False, "hA1")
        start = await service.current_position()
        await service.send(alice, "m.a", "t1", {BOB: {"*": {"n": 1}}})
        await service.send(alice, "m.b", "t2", {BOB: {"B1": {"n": 2}}, ALICE: {"A1": {"n": 3}}})
        # Written past the service (as another process would): the history has a gap.
        await hs.storage.to_device.send(
            ALICE, "A1", "t3", "m.c", [OutgoingMessage(BOB, "B2", '{"n":4}')], now_ms()
        )
        await service.send(alice, "m.d", "t4", {BOB: {"*": {"n": 5}}})
        end = await service.current_position()
        if hs.db.is_sqlite:
            # The last send (two rows) is held; what came before the gap is not.
            assert service._recent is not None
            assert service._recent.pending(BOB, "B1", end - 2, 100) is not None
            assert service._recent.pending(BOB, "B1", end - 3, 100) is None
        else:
            assert service._recent is None  # other processes may share the database
        for after in range(start, end + 1):
            requests = [(u, d, after) for u, d in devices]
            position, stored = await hs.storage.to_device.pending_many(requests, 100)
            for user_id, device_id in devices:
                answer = await service._pending(user_id, device_id, after)
                expected = stored[(user_id, device_id)]
                assert answer[:2] == (position, expected[0]), (user_id, device_id, after)

    asyncio.run(scenario())


def test_a_device_created_again_does_not_get_the_old_ones_messages(homeserver: HomeServer) -> None:
    hs = homeserver
    service = hs.to_device

    async def scenario() -> None:
        hs.notifier.bind_loop(asyncio.get_running_loop())  # (as the app's lifespan does)
        for user_id, device_id in [(ALICE, "A1"), (BOB, "B1")]:
            await hs.storage.accounts.create_user(
                user_id, None, False, now_ms(), NewLogin(device_id, None, f"h{device_id}")
            )
        alice = Requester(ALICE, "A1", False, "hA1")
        start = await service.current_position()
        await service.send(alice, "m.a", "t1", {BOB: {"B1": {"n": 1}}})
        assert (await service._pending(BOB, "B1", start))[1] != []
        await hs.storage.accounts.delete_devices(BOB, ["B1"])
        await hs.storage.accounts.add_login(BOB, NewLogin("B1", None, "hB1-again"), now_ms())
        await asyncio.sleep(0)  # (the commit hook's callback runs before the caller resumes)
        position, messages, _, _ = await service._pending(BOB, "B1", start)
        assert messages == []
        assert position == await service.current_position()

    asyncio.run(scenario())
