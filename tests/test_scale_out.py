"""Three real `mxkeys serve` processes on one PostgreSQL database, every client's requests
spread over them round-robin: nothing may depend on which process answers."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import selected_backends
from tests.e2e_keys import new_device, setup_device, upload
from tests.helpers import Api, User
from tests.test_multiprocess import start_process


class Cluster:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.apis = [Api(url) for url in urls]
        self._next = itertools.cycle(range(len(urls)))
        self._lock = threading.Lock()

    def api(self) -> Api:
        """The next process, round-robin (each Api has its own connection pool)."""
        with self._lock:
            return self.apis[next(self._next)]

    def close(self) -> None:
        for api in self.apis:
            api.http.close()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, new_database_url,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if "postgres" not in selected_backends(request.config):
        pytest.skip("PostgreSQL backend not selected")
    url = new_database_url("postgres")
    workdir = str(tmp_path_factory.mktemp("cluster"))
    processes = [start_process(url, workdir, {"MXKEYS_KEYS_CLAIM_PER_MINUTE": "100000",
                                              "MXKEYS_KEYS_CLAIM_BURST": "100000"})
                 for _ in range(3)]
    cluster = Cluster([u for _, u in processes])
    try:
        yield cluster
    finally:
        cluster.close()
        for process, _ in processes:
            process.terminate()
            process.wait(timeout=30)


def test_to_device_reaches_a_sync_waiting_on_another_process(cluster: Cluster) -> None:
    alice = cluster.api().register()
    bob = cluster.api().register()
    waiting_on, sending_on = cluster.apis[0], cluster.apis[1]
    since = waiting_on.get("sync", bob).json()["next_batch"]

    def send_later() -> None:
        time.sleep(0.5)
        with Api(sending_on.base_url) as api:
            api.put("sendToDevice/m.test/x", alice,
                    json={"messages": {bob.user_id: {bob.device_id: {"hi": 1}}}})

    thread = threading.Thread(target=send_later)
    thread.start()
    started = time.monotonic()
    body = waiting_on.get("sync", bob, params={"since": since, "timeout": "30000"}).json()
    thread.join()
    assert time.monotonic() - started < 1.5  # 0.5 s of it is the sender's sleep
    assert [e["content"] for e in body["to_device"]["events"]] == [{"hi": 1}]


def test_backup_written_on_one_read_on_another(cluster: Cluster) -> None:
    alice = cluster.api().register()
    version = cluster.api().post("room_keys/version", alice, json={
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "abc"}}).json()["version"]
    key = {"first_message_index": 0, "forwarded_count": 0, "is_verified": True,
           "session_data": {"ciphertext": "x", "ephemeral": "y", "mac": "z"}}
    written = cluster.api().put("room_keys/keys", alice, params={"version": version}, json={
        "rooms": {"!r:localhost": {"sessions": {f"s{i}": key for i in range(10)}}}}).json()
    for api in cluster.apis:
        info = api.get("room_keys/version", alice).json()
        assert (info["etag"], info["count"]) == (written["etag"], written["count"]) == (
            written["etag"], 10)


def test_claims_over_all_processes_never_repeat_a_key(cluster: Cluster) -> None:
    bob = cluster.api().register()
    device = setup_device(cluster.api(), bob, otks=30, fallback=True)
    claimers = [cluster.api().register() for _ in range(6)]

    def claim(i: int) -> str:
        api = cluster.apis[i % 3]
        body = api.post("keys/claim", claimers[i % 6], json={
            "one_time_keys": {bob.user_id: {device.device_id: "signed_curve25519"}}}).json()
        (key_id,) = body["one_time_keys"][bob.user_id][device.device_id]
        return key_id

    with ThreadPoolExecutor(12) as pool:
        key_ids = list(pool.map(claim, range(60)))
    one_time = [k for k in key_ids if k != "signed_curve25519:fb"]
    assert len(one_time) == len(set(one_time)) == 30
    assert key_ids.count("signed_curve25519:fb") == 30


def test_device_deletion_revokes_everywhere_at_once(cluster: Cluster) -> None:
    user = cluster.api().register()
    other = cluster.apis[0].login(user)
    for api in cluster.apis:
        assert api.get("account/whoami", other).status_code == 200
    first = cluster.apis[1].delete(f"devices/{other.device_id}", user).json()
    assert cluster.apis[2].delete(f"devices/{other.device_id}", user, json={
        "auth": cluster.apis[2].password_auth(user, first["session"])}).status_code == 200
    for api in cluster.apis:
        assert api.get("account/whoami", other).status_code == 401


def test_parallel_writers_never_make_a_sync_miss_or_repeat(cluster: Cluster) -> None:
    bob = cluster.api().register()
    senders = [cluster.api().register() for _ in range(4)]
    mates = [cluster.api().register() for _ in range(4)]
    room_id = cluster.api().post("createRoom", bob, json={
        "preset": "public_chat"}).json()["room_id"]
    for mate in mates:
        assert cluster.api().post(f"rooms/{room_id}/join", mate).status_code == 200
    since = cluster.api().get("sync", bob).json()["next_batch"]
    per_sender = 40
    stop = threading.Event()

    def send_messages(index: int, sender: User) -> None:
        for n in range(per_sender):
            api = cluster.apis[(index + n) % 3]
            response = api.put(f"sendToDevice/m.test/{index}-{n}", sender, json={
                "messages": {bob.user_id: {bob.device_id: {"id": f"{index}-{n}"}}}})
            assert response.status_code == 200
            time.sleep(random.random() * 0.005)

    def change_devices(mate: User) -> None:
        for _ in range(3):
            device = new_device(cluster.api().login(mate))
            upload(cluster.api(), device, device_keys=device.device_keys())

    received: list[str] = []
    changed: set[str] = set()

    def consume() -> None:
        nonlocal since
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = cluster.api().get("sync", bob, params={"since": since,
                                                          "timeout": "200"}).json()
            since = body["next_batch"]
            received.extend(e["content"]["id"] for e in body["to_device"]["events"])
            changed.update(body["device_lists"]["changed"])
            if stop.is_set() and len(received) >= per_sender * len(senders):
                # One more round to see that nothing else arrives.
                body = cluster.api().get("sync", bob, params={"since": since}).json()
                received.extend(e["content"]["id"] for e in body["to_device"]["events"])
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(send_messages, i, s) for i, s in enumerate(senders)]
        jobs += [pool.submit(change_devices, m) for m in mates]
        for job in jobs:
            job.result()
    stop.set()
    consumer.join()
    expected = {f"{i}-{n}" for i in range(len(senders)) for n in range(per_sender)}
    assert sorted(received) == sorted(expected)  # every message exactly once
    assert {m.user_id for m in mates} <= changed
