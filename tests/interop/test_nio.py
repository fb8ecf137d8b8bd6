"""End-to-end encryption with matrix-nio (libolm inside) against mxkeys.

Two nio clients upload their device keys, query and claim each other's, trust each other's
devices explicitly, share a Megolm session over to-device messages and exchange encrypted
messages in an encrypted room; then alice logs in a second device and bob's next message
decrypts on it. Each step is named; a failure says which step and which HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

nio = pytest.importorskip("nio", reason="matrix-nio is in the 'test' extra")
pytest.importorskip("olm", reason="matrix-nio[e2e] (python-olm) is in the 'test' extra")

from tests.interop.conftest import InteropServer  # noqa: E402

PASSWORD = "interop correct horse battery"
STEP_TIMEOUT = 30.0

R = TypeVar("R")


class StepFailed(AssertionError):
    pass


def expect(response: Any, kind: type[R], what: str) -> R:
    """`response` if it is a `kind`; otherwise fail naming the HTTP request and the error."""
    if isinstance(response, kind):
        return response
    transport = getattr(response, "transport_response", None)
    request = (
        f"{transport.method} {transport.url.path} -> {transport.status}"
        if transport is not None
        else "(no HTTP response)"
    )
    errcode = getattr(response, "status_code", None)
    message = getattr(response, "message", response)
    raise StepFailed(f"{what}: {request}: {errcode} {message}")


@contextlib.asynccontextmanager
async def step(name: str) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            yield
    except StepFailed as e:
        raise StepFailed(f"step {name!r} failed: {e}") from None
    except TimeoutError:
        raise StepFailed(f"step {name!r} timed out after {STEP_TIMEOUT} s") from None


class Client:
    """A nio client with the bookkeeping `sync_forever` would do, one sync at a time."""

    def __init__(self, base_url: str, user: str, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.nio = nio.AsyncClient(base_url, user, store_path=str(store), config=config)
        self.texts: list[tuple[str, nio.RoomMessageText]] = []
        self.undecrypted: list[nio.MegolmEvent] = []
        self.nio.add_event_callback(self._on_text, nio.RoomMessageText)
        self.nio.add_event_callback(self._on_megolm, nio.MegolmEvent)

    async def _on_text(self, room: Any, event: nio.RoomMessageText) -> None:
        self.texts.append((room.room_id, event))

    async def _on_megolm(self, room: Any, event: nio.MegolmEvent) -> None:
        self.undecrypted.append(event)

    @property
    def user_id(self) -> str:
        return self.nio.user_id

    @property
    def device_id(self) -> str:
        return self.nio.device_id

    async def sync(self) -> nio.SyncResponse:
        response = expect(await self.nio.sync(timeout=0), nio.SyncResponse, "sync")
        if self.nio.should_upload_keys:
            expect(await self.nio.keys_upload(), nio.KeysUploadResponse, "keys/upload")
        if self.nio.should_query_keys:
            expect(await self.nio.keys_query(), nio.KeysQueryResponse, "keys/query")
        return response

    async def sync_until(self, what: str, predicate: Any) -> None:
        while True:
            await self.sync()
            if predicate():
                return
            await asyncio.sleep(0.05)

    def decrypted_bodies(self, room_id: str) -> list[str]:
        # nio hands over events it decrypted as RoomMessageText with `decrypted` set.
        return [e.body for r, e in self.texts if r == room_id and e.decrypted]

    def trust_all_devices_of(self, user_id: str) -> list[str]:
        """Mark every known device of `user_id` verified (the user compared fingerprints)."""
        devices = list(self.nio.device_store.active_user_devices(user_id))
        for device in devices:
            self.nio.verify_device(device)
        return [d.device_id for d in devices]

    async def close(self) -> None:
        await self.nio.close()


async def register(server: InteropServer, tmp: Path, name: str) -> Client:
    client = Client(server.base_url, "", tmp / name)
    expect(
        await client.nio.register(name, PASSWORD, device_name=f"{name} (nio)"),
        nio.RegisterResponse,
        "register",
    )
    return client


async def scenario(server: InteropServer, tmp: Path) -> None:
    suffix = secrets.token_hex(4)
    alice_name, bob_name = f"alice-{suffix}", f"bob-{suffix}"
    clients: list[Client] = []
    try:
        async with step("1. alice and bob register and upload their device keys"):
            alice = await register(server, tmp, alice_name)
            bob = await register(server, tmp, bob_name)
            clients += [alice, bob]
            for client in (alice, bob):
                assert client.nio.should_upload_keys
                uploaded = expect(
                    await client.nio.keys_upload(), nio.KeysUploadResponse, "keys/upload"
                )
                assert uploaded.signed_curve25519_count > 0, uploaded

        async with step("2. alice creates an encrypted room and invites bob, who joins"):
            created = expect(
                await alice.nio.room_create(
                    name="nio interop",
                    invite=[bob.user_id],
                    initial_state=[
                        {
                            "type": "m.room.encryption",
                            "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                        }
                    ],
                ),
                nio.RoomCreateResponse,
                "createRoom",
            )
            room_id = created.room_id
            await bob.sync_until("the invite", lambda: room_id in bob.nio.invited_rooms)
            expect(await bob.nio.join(room_id), nio.JoinResponse, "join")
            await alice.sync_until(
                "bob's join",
                lambda: room_id in alice.nio.rooms
                and bob.user_id in alice.nio.rooms[room_id].users,
            )
            await bob.sync_until("the joined room", lambda: room_id in bob.nio.rooms)
            assert alice.nio.rooms[room_id].encrypted, "alice's room is not encrypted"
            assert bob.nio.rooms[room_id].encrypted, "bob's room is not encrypted"

        async with step("3. they query each other's device keys and trust them explicitly"):
            for me, other in ((alice, bob), (bob, alice)):
                # nio queries the keys of room members itself (after the sync that showed
                # the membership); the device it stored must carry the other's real keys.
                await me.sync_until(
                    f"{other.user_id}'s device keys",
                    lambda me=me, other=other: other.device_id
                    in me.nio.device_store[other.user_id],
                )
                olm_device = me.nio.device_store[other.user_id][other.device_id]
                identity = other.nio.olm.account.identity_keys
                assert olm_device.ed25519 == identity["ed25519"], "wrong ed25519 key"
                assert olm_device.curve25519 == identity["curve25519"], "wrong curve25519 key"
                assert me.trust_all_devices_of(other.user_id) == [other.device_id]

        async with step("4. alice claims bob's one-time key and shares a Megolm session"):
            claimed = expect(
                await alice.nio.keys_claim({bob.user_id: [bob.device_id]}),
                nio.KeysClaimResponse,
                "keys/claim",
            )
            otks = claimed.one_time_keys.get(bob.user_id, {}).get(bob.device_id, {})
            assert any(k.startswith("signed_curve25519:") for k in otks), claimed.one_time_keys
            shared = expect(
                await alice.nio.share_group_session(room_id),
                nio.ShareGroupSessionResponse,
                "sendToDevice",
            )
            assert (bob.user_id, bob.device_id) in shared.users_shared_with, shared

        async with step("5. alice sends encrypted messages and bob decrypts them"):
            sent = ["hello bob 1 (nio)", "hello bob 2 (nio)"]
            for body in sent:
                expect(
                    await alice.nio.room_send(
                        room_id, "m.room.message", {"msgtype": "m.text", "body": body}
                    ),
                    nio.RoomSendResponse,
                    "send",
                )
            await bob.sync_until(
                "alice's messages",
                lambda: all(b in bob.decrypted_bodies(room_id) for b in sent),
            )
            assert not bob.undecrypted, [e.session_id for e in bob.undecrypted]

        async with step("6. bob replies, encrypted; alice decrypts it"):
            reply = "hello alice (nio)"
            expect(
                await bob.nio.room_send(
                    room_id, "m.room.message", {"msgtype": "m.text", "body": reply}
                ),
                nio.RoomSendResponse,
                "send",
            )
            await alice.sync_until("bob's reply", lambda: reply in alice.decrypted_bodies(room_id))
            assert not alice.undecrypted, [e.session_id for e in alice.undecrypted]

        async with step("7. alice logs in a second device; bob's next message decrypts on it"):
            alice2 = Client(server.base_url, alice.user_id, tmp / "alice2")
            clients.append(alice2)
            logged_in = expect(
                await alice2.nio.login(PASSWORD, device_name="alice's second device (nio)"),
                nio.LoginResponse,
                "login",
            )
            assert logged_in.device_id != alice.device_id
            expect(await alice2.nio.keys_upload(), nio.KeysUploadResponse, "keys/upload")
            await alice2.sync_until("the room", lambda: room_id in alice2.nio.rooms)
            # Bob hears of the new device through device_lists in /sync, then queries it.
            await bob.sync_until(
                "alice's new device",
                lambda: alice2.device_id in bob.nio.device_store[alice.user_id],
            )
            assert sorted(bob.trust_all_devices_of(alice.user_id)) == sorted(
                [alice.device_id, alice2.device_id]
            )
            second = "hello both of alice's devices (nio)"
            expect(
                await bob.nio.room_send(
                    room_id, "m.room.message", {"msgtype": "m.text", "body": second}
                ),
                nio.RoomSendResponse,
                "send",
            )
            await alice2.sync_until(
                "bob's message on the new device",
                lambda: second in alice2.decrypted_bodies(room_id),
            )
            await alice.sync_until(
                "bob's message on the first device",
                lambda: second in alice.decrypted_bodies(room_id),
            )
    finally:
        for client in clients:
            await client.close()


def test_nio_e2ee(interop_server: InteropServer, tmp_path: Path) -> None:
    asyncio.run(scenario(interop_server, tmp_path))
    access = interop_server.access
    assert not access.server_errors(), f"requests the server failed on: {access.server_errors()}"
    assert not access.unmatched(), f"endpoints mxkeys lacks: {access.unmatched()}"
    print("\nendpoints matrix-nio called:\n  " + "\n  ".join(access.routes()))
