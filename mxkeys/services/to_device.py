"""Send-to-device messaging (spec: `modules/send_to_device.md`, `to_device.yaml`)."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from mxkeys.errors import invalid_param, too_large
from mxkeys.ids import MAX_DEVICE_ID_LENGTH, now_ms, split_user_id
from mxkeys.metrics import TO_DEVICE_QUEUED, TO_DEVICE_REMOTE
from mxkeys.services.auth import Requester
from mxkeys.services.notifier import Notifier
from mxkeys.services.ratelimit import RateLimiter
from mxkeys.services.sync import SyncContext, future_token
from mxkeys.storage.to_device import InboxMessage, OutgoingMessage, SentMessages, ToDeviceStore

logger = logging.getLogger(__name__)

# Messages delivered per /sync response; the rest follow in the next sync, at once.
MAX_MESSAGES_PER_SYNC = 100
MAX_EVENT_TYPE_LENGTH = 255
MAX_TXN_ID_LENGTH = 255
ACK_FLUSH_DELAY_S = 0.05

_encode = msgspec.json.Encoder().encode


class RecentSends:
    """The messages of this process's latest sends, by stream position, so that the syncs a
    send wakes can be answered without reading back what was just written.

    It answers for a device only when it holds every position after the device's cursor up
    to the newest send: positions are handed out in commit order (storage/to_device.py), so
    the device's messages in that range are exactly the ones held here. Anything else (a
    cursor older than the history, a gap in the positions, a long queue) goes to the database
    as before. Deleting a device deletes its queue: the history is then dropped (a device
    created again under the same ID must not get the old one's messages).

    Only where one process owns the database (SQLite): on a shared PostgreSQL another process
    may delete a device this one holds messages for without this one knowing in time."""

    def __init__(self, max_sends: int = 64) -> None:
        self._sends: collections.deque[_Send] = collections.deque(maxlen=max_sends)

    def add(self, sent: SentMessages, sender: str, event_type: str) -> None:
        if self._sends and self._sends[-1].sent.last + 1 != sent.first:
            self._sends.clear()  # not contiguous with what is held: start again from here
        self._sends.append(_Send(sent, sender, event_type))

    def clear(self) -> None:
        self._sends.clear()

    def pending(
        self, user_id: str, device_id: str, after: int, limit: int
    ) -> tuple[int, list[InboxMessage]] | None:
        """(position, the device's messages in (after, position]), or None if not known."""
        sends = self._sends
        if not sends or not sends[0].sent.first <= after + 1 <= sends[-1].sent.last:
            return None
        key = (user_id, device_id)
        messages = []
        # Newest first, back to the send holding the cursor: a device that keeps up looks at
        # the latest send or two, however many are held.
        for send in reversed(sends):
            i = send.index.get(key)
            if i is not None and send.sent.first + i > after:
                messages.append(send.message(i))
            if send.sent.first <= after + 1:
                break
        if len(messages) > limit:
            return None
        messages.reverse()
        return sends[-1].sent.last, messages


class _Send:
    """One send held by `RecentSends`: what it stored, and where each device's row is.

    Only an index: a send wakes its recipients' syncs right after it is held, and each builds
    its own message, so the send itself makes no object per recipient but a key."""

    __slots__ = ("event_type", "index", "sender", "sent")

    def __init__(self, sent: SentMessages, sender: str, event_type: str) -> None:
        self.sent = sent
        self.sender = sender
        self.event_type = event_type
        self.index = {(user, device): i for i, (user, device, _) in enumerate(sent.rows)}

    def message(self, i: int) -> InboxMessage:
        return InboxMessage(self.sent.first + i, self.sender, self.event_type, self.sent.rows[i][2])


class ToDeviceService:
    stream = "to_device"

    def __init__(
        self,
        store: ToDeviceStore,
        notifier: Notifier,
        server_name: str,
        limiter: RateLimiter | None = None,
        max_per_request: int = 10_000,
        max_queued: int = 10_000,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.server_name = server_name
        self.limiter = limiter
        self.max_per_request = max_per_request
        self.max_queued = max_queued
        self._acks: dict[tuple[str, str], int] = {}
        self._reads: list[
            tuple[str, str, int, asyncio.Future[tuple[int, list[InboxMessage], bool, bool]]]
        ] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._recent = RecentSends() if store.db.is_sqlite else None

    async def send(
        self,
        requester: Requester,
        event_type: str,
        txn_id: str,
        messages: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
            raise invalid_param("Invalid event type")
        if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
            raise invalid_param(f"Transaction IDs are 1 to {MAX_TXN_ID_LENGTH} characters")
        if self.limiter is not None:
            await self.limiter.check(requester.user_id)
        count = sum(len(by_device) for by_device in messages.values())
        if count > self.max_per_request:
            raise too_large(f"At most {self.max_per_request} messages per request ({count} sent)")
        outgoing: list[OutgoingMessage] = []
        remote = 0
        for user_id, by_device in messages.items():
            parts = split_user_id(user_id)
            if parts is None:
                raise invalid_param(f"Invalid user ID {user_id!r}")
            if parts[1] != self.server_name:
                # Federation does not exist yet: such messages cannot be delivered.
                remote += len(by_device)
                continue
            for device_id, content in by_device.items():
                if not device_id or len(device_id) > MAX_DEVICE_ID_LENGTH:
                    raise invalid_param(f"Invalid device ID {device_id[:300]!r}")
                outgoing.append(OutgoingMessage(user_id, device_id, _encode(content).decode()))
        sent = await self.store.send(
            requester.user_id,
            requester.device_id,
            txn_id,
            event_type,
            outgoing,
            now_ms(),
            self.max_queued,
        )
        if sent is not None and remote:  # (a retried transaction was counted the first time)
            TO_DEVICE_REMOTE.inc(remote)
            logger.info("dropped %d to-device messages for users on other servers", remote)
        if sent is not None and sent.rows:
            TO_DEVICE_QUEUED.inc(len(sent.rows))
            if self._recent is not None:
                self._recent.add(sent, requester.user_id, event_type)
            self.notifier.notify_users(sorted({row[0] for row in sent.rows}), [self.stream])

    def devices_removed(self, pairs: set[tuple[str, str]]) -> None:
        """Database commit hook (in a storage thread) of a transaction that deleted devices.

        The history is dropped on the event loop before the deleting request resumes (the
        loop runs callbacks in the order they were queued, and this one is queued before the
        transaction's result)."""
        loop = self.notifier.loop
        if self._recent is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._recent.clear)

    # -- acknowledgements ------------------------------------------------------------------
    #
    # A device acknowledges messages by syncing with a token past them. Deleting them is
    # cleanup, not correctness (delivery only reads past the token), so deletions of all
    # devices are batched into one write every ACK_FLUSH_DELAY_S instead of one per sync.

    def _acknowledge(self, user_id: str, device_id: str, position: int) -> None:
        key = (user_id, device_id)
        self._acks[key] = max(position, self._acks.get(key, 0))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(ACK_FLUSH_DELAY_S)
        await self.flush_acknowledged()

    async def flush_acknowledged(self) -> None:
        acks, self._acks = self._acks, {}
        try:
            await self.store.delete_acknowledged([(u, d, p) for (u, d), p in acks.items()])
        except Exception:
            logger.exception("could not delete acknowledged to-device messages")

    # -- the /sync source ----------------------------------------------------------------
    #
    # When a to-device request wakes many waiting syncs at once, each needs its device's
    # inbox. Reads asked for in the same turn of the event loop are coalesced into one
    # query for all those devices (`pending_many`).

    async def current_position(self) -> int:
        return await self.store.current_position()

    async def _pending(
        self, user_id: str, device_id: str, after: int
    ) -> tuple[int, list[InboxMessage], bool, bool]:
        known = (
            self._recent.pending(user_id, device_id, after, MAX_MESSAGES_PER_SYNC)
            if self._recent is not None
            else None
        )
        if known is not None:
            # (Whether acknowledged rows remain is not known here: say they may, so that the
            # acknowledgement deletes them if they do.)
            position, messages = known
            return position, messages, False, after > 0
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, list[InboxMessage], bool, bool]] = (
            loop.create_future()
        )
        self._reads.append((user_id, device_id, after, future))
        if len(self._reads) == 1:
            loop.call_soon(lambda: loop.create_task(self._read_batch()))
        return await future

    async def _read_batch(self) -> None:
        batch, self._reads = self._reads, []
        # One request per device and cursor; duplicates share the answer.
        wanted = sorted({(u, d, a) for u, d, a, _ in batch})
        by_device: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for request in wanted:
            by_device.setdefault(request[:2], []).append(request)
        rounds = max(len(v) for v in by_device.values())
        answers: dict[tuple[str, str, int], tuple[int, list[InboxMessage], bool, bool]] = {}
        try:
            for index in range(rounds):
                requests = [v[index] for v in by_device.values() if len(v) > index]
                position, found = await self.store.pending_many(
                    requests, MAX_MESSAGES_PER_SYNC
                )
                for u, d, a in requests:
                    messages, more, stale = found[(u, d)]
                    answers[(u, d, a)] = (position, messages, more, stale)
        except Exception as e:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for u, d, a, future in batch:
            if not future.done():
                future.set_result(answers[(u, d, a)])

    async def fill(
        self, who: Requester, since: int | None, response: dict[str, Any],
        sync_filter: Any, context: SyncContext,
    ) -> tuple[bool, int]:
        after = since or 0
        position, messages, more, stale = await self._pending(
            who.user_id, who.device_id, after
        )
        if since is not None and since > position:
            raise future_token()
        if stale and since is not None:
            self._acknowledge(who.user_id, who.device_id, since)
        response["to_device"]["events"] = [
            {"sender": m.sender, "type": m.type, "content": msgspec.Raw(m.content)}
            for m in messages
        ]
        reached = messages[-1].stream_id if more else position
        return bool(messages), reached
