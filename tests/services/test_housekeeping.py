import asyncio

from mxkeys.homeserver import HomeServer
from mxkeys.ids import now_ms
from mxkeys.services.housekeeping import TXN_LIFETIME_MS, clean_up_once
from mxkeys.storage.accounts import NewLogin
from mxkeys.storage.to_device import OutgoingMessage


def test_expired_sessions_and_old_transactions_are_removed(homeserver: HomeServer) -> None:
    hs = homeserver

    async def scenario() -> None:
        old = now_ms() - hs.config.uia_session_lifetime_ms - 1000
        await hs.storage.uia.create_session("old", None, "POST", "register", old)
        await hs.storage.uia.create_session("new", None, "POST", "register", now_ms())
        await hs.storage.accounts.create_user("@a:localhost", None, False, 1,
                                              NewLogin("D", None, "h"))
        ancient = now_ms() - TXN_LIFETIME_MS - 1000
        await hs.storage.to_device.send("@a:localhost", "D", "t-old", "m.x",
                                        [OutgoingMessage("@a:localhost", "D", "{}")], ancient)
        await hs.storage.to_device.send("@a:localhost", "D", "t-new", "m.x", [], now_ms())
        await clean_up_once(hs)
        assert await hs.storage.uia.get_session("old") is None
        assert await hs.storage.uia.get_session("new") is not None
        # The old transaction ID is forgotten (a reuse sends again); the new one is kept.
        reused = await hs.storage.to_device.send("@a:localhost", "D", "t-old", "m.x", [],
                                                 now_ms())
        assert reused is not None and reused.rows == []
        assert await hs.storage.to_device.send("@a:localhost", "D", "t-new", "m.x", [],
                                               now_ms()) is None

    asyncio.run(scenario())
