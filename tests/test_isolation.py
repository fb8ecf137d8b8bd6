"""No user can read or change another user's end-to-end-encryption data.

Alice has two devices with device keys, one-time and fallback keys, cross-signing keys (one
device signed by her self-signing key), a key backup in three versions (the first deleted, an
older one and the current one) holding keys in several rooms, global and room account data,
and to-device messages queued for both devices that they have not synced yet.

Mallory (with backups, cross-signing keys and a device of her own named like one of Alice's)
and Eve (who shares a room with Alice and has nothing else) then try every read and write of
Alice's data, guessing her IDs and backup versions. Each attempt is one row of `attempts()`:
who, method, path, body, and the status and errcode expected. After all of them, Alice's
snapshot (backups, keys, devices, and what each device's /sync shows: to-device queue,
account data, one-time-key counts, unused fallback keys) is what it was before, no answer to
Mallory or Eve contained any of Alice's secrets, and Alice's devices receive their to-device
messages through /sync exactly once. Claiming Alice's one-time keys is allowed (that is how
Olm sessions start) and takes one key per device, nothing else.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import sign_json, verify_signed_json
from unpaddedbase64 import decode_base64

from tests.e2e_keys import (
    CrossSigning,
    Device,
    new_cross_signing,
    new_device,
    public_key,
    setup_device,
    signing_key,
)
from tests.helpers import Api, User
from tests.snapshots import snapshot

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
SIGNED = "signed_curve25519"
# Rooms named in Alice's backups (the first is replaced by the real room she shares with Eve).
BACKUP_ROOMS = ["!work:localhost", "!family:example.org", "!o+dd/room:localhost"]
SESSIONS = ["sess-A", "o+21hSjP+mgEmcfdslPsQdvzWnkdt0Wyo00Kp/+R8Kc", "sess-C"]
ALICE_TXN = "alice-txn-1"  # a transaction ID Alice's first device used for /sendToDevice


def enc(value: str) -> str:
    return quote(value, safe="")


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.request.url, response.text)
    return response.json()


@dataclass
class Alice:
    devices: list[Device]
    cs: CrossSigning
    room_id: str  # shared with Eve
    versions: dict[str, str]  # "deleted", "older", "current"
    to_device: dict[str, list[dict[str, Any]]]  # device ID -> contents queued, in order
    otks: dict[str, dict[str, str]]  # device ID -> "algorithm:key ID" -> public key
    secrets: list[str] = field(default_factory=list)  # never in an answer to anyone else

    @property
    def user(self) -> User:
        return self.devices[0].user

    @property
    def user_id(self) -> str:
        return self.user.user_id

    def secret(self, label: str) -> str:
        value = f"alice-secret-{label}-{secrets.token_hex(6)}"
        self.secrets.append(value)
        return value


def backup_key(session_data: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return {
        "first_message_index": index,
        "forwarded_count": 0,
        "is_verified": True,
        "session_data": session_data,
    }


def new_backup(api: Api, user: User, public: str) -> str:
    body = {"algorithm": ALGORITHM, "auth_data": {"public_key": public}}
    return ok(api.post("room_keys/version", user, json=body))["version"]


def setup_alice(api: Api, eve: User) -> Alice:
    first = api.register()
    second = api.login(first)
    devices = [setup_device(api, first, fallback=True), setup_device(api, second, fallback=True)]
    for n, device in enumerate(devices):
        ok(api.put(f"devices/{device.device_id}", device.user,
                   json={"display_name": f"alice device {n}"}))
    uid = first.user_id
    cs = new_cross_signing(uid)
    ok(api.post("keys/device_signing/upload", first, json=cs.body()))
    signed = sign_json(copy.deepcopy(devices[0].stored_keys), uid, cs.self_signing)
    assert ok(api.post("keys/signatures/upload", first,
                       json={uid: {devices[0].device_id: signed}})) == {"failures": {}}

    room_id = ok(api.post("createRoom", first, json={"invite": [eve.user_id]}))["room_id"]
    ok(api.post(f"rooms/{enc(room_id)}/join", eve))

    alice = Alice(devices, cs, room_id, versions={}, to_device={}, otks={})
    alice.secrets.append(public_key(cs.user_signing))  # only Alice may see her USK
    rooms = [room_id, *BACKUP_ROOMS[1:]]
    for name in ("deleted", "older", "current"):
        version = new_backup(api, first, alice.secret(f"backup-key-{name}"))
        alice.versions[name] = version
        body = {"rooms": {room: {"sessions": {
            session: backup_key({"ciphertext": alice.secret(f"megolm-{name}"), "mac": "m"})
            for session in SESSIONS}} for room in rooms}}
        stored = ok(api.put("room_keys/keys", first, json=body, params={"version": version}))
        assert stored["count"] == len(rooms) * len(SESSIONS)
    ok(api.delete(f"room_keys/version/{alice.versions['deleted']}", first))

    ok(api.put(f"user/{enc(uid)}/account_data/m.secret_storage.default_key", first,
               json={"key": alice.secret("ssss-key-id")}))
    ok(api.put(f"user/{enc(uid)}/account_data/m.cross_signing.master", first,
               json={"encrypted": {"k": {"ciphertext": alice.secret("ssss-master")}}}))
    ok(api.put(f"user/{enc(uid)}/rooms/{enc(room_id)}/account_data/org.example.note", first,
               json={"note": alice.secret("room-note")}))

    # To-device messages for Alice's devices, queued and not synced yet: from Eve, and one
    # from Alice's first device to her second (with the transaction ID Mallory will reuse).
    d0, d1 = (d.device_id for d in devices)
    for device in devices:
        alice.to_device[device.device_id] = []
    sends = [
        (eve, "eve-1", {d0: {"body": alice.secret("olm-d0")}}),
        (eve, "eve-2", {d1: {"body": alice.secret("olm-d1")}}),
        (eve, "eve-3", {"*": {"body": alice.secret("olm-all")}}),
        (first, ALICE_TXN, {d1: {"body": alice.secret("olm-self")}}),
    ]
    for sender, txn, by_device in sends:
        ok(api.put(f"sendToDevice/m.room.encrypted/{txn}", sender,
                   json={"messages": {uid: by_device}}))
        for target, content in by_device.items():
            for device_id in ([d0, d1] if target == "*" else [target]):
                alice.to_device[device_id].append(content)

    # One-time keys whose public halves are kept: only /keys/claim may hand them out.
    for device in devices:
        otks = device.otks(3, prefix="alice")
        ok(api.post("keys/upload", device.user, json={"one_time_keys": otks}))
        alice.otks[device.device_id] = {name: obj["key"] for name, obj in otks.items()}
        alice.secrets.extend(alice.otks[device.device_id].values())
    return alice


@dataclass
class Mallory:
    user: User  # her first device
    twin: User  # her second device, whose ID is the ID of Alice's first device
    cs: CrossSigning
    versions: list[str]  # her own backups: an older one and the current one


def setup_mallory(api: Api, alice: Alice) -> Mallory:
    device = setup_device(api, otks=1)
    user = device.user
    cs = new_cross_signing(user.user_id)
    ok(api.post("keys/device_signing/upload", user, json=cs.body()))
    # Backup versions count per user: Mallory's "1" and "2" are not Alice's.
    versions = [new_backup(api, user, "mallory-backup-key") for _ in range(2)]
    assert versions == [alice.versions["deleted"], alice.versions["older"]]
    twin = api.login(user, device_id=alice.devices[0].device_id)
    assert twin.device_id == alice.devices[0].device_id and twin.user_id == user.user_id
    return Mallory(user, twin, cs, versions)


# -- the attempts ------------------------------------------------------------------------------


@dataclass
class Attempt:
    who: str  # "mallory", "twin" (Mallory's device named like Alice's) or "eve"
    method: str
    path: str
    body: Any = None
    status: int = 403
    errcode: str | dict[str, dict[str, str]] | None = "M_FORBIDDEN"
    # For UIA-protected requests: after the 401, authenticate as "self" (the requester's own
    # password), as "alice" (Alice's identifier with a guessed password), or as
    # "alice+self" (Alice's identifier with the requester's own password).
    auth: str | None = None
    answer: Any = None  # the whole answer expected, where it is known


def attempts(alice: Alice, mallory: Mallory) -> list[Attempt]:
    uid = alice.user_id
    d0, d1 = (d.device_id for d in alice.devices)
    room = enc(alice.room_id)
    mallory_id = mallory.user.user_id
    current = alice.versions["current"]
    version_body = {"algorithm": ALGORITHM, "auth_data": {"public_key": "mallory's"}}
    a_room, a_session = enc(alice.room_id), enc(SESSIONS[1])
    one_key = backup_key({"ciphertext": "mallory's"})
    keys_body = {"rooms": {alice.room_id: {"sessions": {SESSIONS[1]: one_key}}}}

    def backup_rows(who: str, version: str, status: int, errcode: str | None) -> list[Attempt]:
        """Every backup path naming `version`, with the answer expected for all of them."""
        q = f"?version={version}"
        rows = [
            Attempt(who, "GET", f"room_keys/version/{version}"),
            Attempt(who, "PUT", f"room_keys/version/{version}", version_body),
            Attempt(who, "GET", f"room_keys/keys{q}"),
            Attempt(who, "GET", f"room_keys/keys/{a_room}{q}"),
            Attempt(who, "GET", f"room_keys/keys/{a_room}/{a_session}{q}"),
            Attempt(who, "PUT", f"room_keys/keys{q}", keys_body),
            Attempt(who, "PUT", f"room_keys/keys/{a_room}{q}", {"sessions": {"s": one_key}}),
            Attempt(who, "PUT", f"room_keys/keys/{a_room}/{a_session}{q}", one_key),
            Attempt(who, "DELETE", f"room_keys/keys/{a_room}/{a_session}{q}"),
            Attempt(who, "DELETE", f"room_keys/keys/{a_room}{q}"),
            Attempt(who, "DELETE", f"room_keys/keys{q}"),
            Attempt(who, "DELETE", f"room_keys/version/{version}"),
        ]
        for row in rows:
            row.status, row.errcode = status, errcode
        return rows

    rows: list[Attempt] = []
    # Key backup. Eve has none: every version of Alice's is unknown to her.
    rows.append(Attempt("eve", "GET", "room_keys/version", status=404, errcode="M_NOT_FOUND"))
    for version in alice.versions.values():
        rows += backup_rows("eve", version, 404, "M_NOT_FOUND")
    # Mallory has versions 1 and 2 of her own (Alice's deleted and older ones), not 3.
    rows += backup_rows("mallory", current, 404, "M_NOT_FOUND")
    m_older, m_current = mallory.versions  # the numbers of Alice's deleted and older ones
    rows += [
        # Alice's session in Mallory's own backup: not there.
        Attempt("mallory", "GET", f"room_keys/keys/{a_room}/{a_session}?version={m_current}",
                status=404, errcode="M_NOT_FOUND"),
        # Writing to Mallory's own older version: not the current one.
        Attempt("mallory", "PUT", f"room_keys/keys?version={m_older}", keys_body,
                status=403, errcode="M_WRONG_ROOM_KEYS_VERSION"),
        # Mallory's own backups, under Alice's version numbers: hers, and empty.
        Attempt("mallory", "GET", "room_keys/version", status=200, errcode=None),
        Attempt("mallory", "GET", f"room_keys/version/{m_current}", status=200, errcode=None),
        Attempt("mallory", "PUT", f"room_keys/version/{m_current}", version_body, status=200,
                errcode=None, answer={}),
        Attempt("mallory", "GET", f"room_keys/keys?version={m_current}", status=200,
                errcode=None, answer={"rooms": {}}),
        Attempt("mallory", "GET", f"room_keys/keys/{a_room}?version={m_current}", status=200,
                errcode=None, answer={"sessions": {}}),
        # Writes under Alice's room and session IDs go to Mallory's own backup.
        Attempt("mallory", "PUT", f"room_keys/keys/{a_room}/{a_session}?version={m_current}",
                one_key, status=200, errcode=None),
        Attempt("mallory", "DELETE", f"room_keys/keys?version={m_current}", status=200,
                errcode=None),
        Attempt("mallory", "DELETE", f"room_keys/version/{m_older}", status=200,
                errcode=None, answer={}),
        # Other spellings of Alice's current version, and the legacy r0 prefix.
        Attempt("eve", "GET", f"room_keys/version/0{current}", status=404,
                errcode="M_NOT_FOUND"),
        Attempt("eve", "GET", f"room_keys/keys?version=0{current}", status=404,
                errcode="M_NOT_FOUND"),
        Attempt("eve", "GET", f"/_matrix/client/r0/room_keys/version/{current}", status=404,
                errcode="M_NOT_FOUND"),
        Attempt("mallory", "GET", f"/_matrix/client/r0/room_keys/keys?version={current}",
                status=404, errcode="M_NOT_FOUND"),
    ]

    # Devices: Alice's device IDs are unknown in Mallory's and Eve's namespaces (except the
    # one Mallory took for herself, which is her own device).
    for who in ("eve", "mallory"):
        for device_id in (d1,) if who == "mallory" else (d0, d1):
            rows += [
                Attempt(who, "GET", f"devices/{device_id}", status=404, errcode="M_NOT_FOUND"),
                Attempt(who, "PUT", f"devices/{device_id}", {"display_name": "pwned"},
                        status=404, errcode="M_NOT_FOUND"),
                Attempt(who, "DELETE", f"devices/{device_id}", {}, status=401, errcode=None),
                # With Alice's identifier and a guessed password, or the requester's own.
                Attempt(who, "DELETE", f"devices/{device_id}", {}, status=401,
                        errcode="M_FORBIDDEN", auth="alice"),
                Attempt(who, "DELETE", f"devices/{device_id}", {}, status=401,
                        errcode="M_FORBIDDEN", auth="alice+self"),
                Attempt(who, "GET", f"/_matrix/client/r0/devices/{device_id}", status=404,
                        errcode="M_NOT_FOUND"),
            ]
    # The device Mallory named like Alice's first one is Mallory's, and shows nothing of
    # Alice's (not her display name).
    rows.append(Attempt("mallory", "GET", f"devices/{d0}", status=200, errcode=None,
                        answer={"device_id": d0}))
    rows += [
        Attempt("eve", "POST", "delete_devices", {"devices": [d0, d1]}, status=401,
                errcode=None),
        Attempt("eve", "POST", "delete_devices", {"devices": [d0, d1]}, status=401,
                errcode="M_FORBIDDEN", auth="alice"),
        # Completed with her own password, these only touch the requester's own devices:
        # none has these IDs, so nothing is deleted (and the snapshot proves Alice lost none).
        Attempt("eve", "POST", "delete_devices", {"devices": [d0, d1]}, status=200,
                errcode=None, auth="self"),
        Attempt("mallory", "DELETE", f"devices/{d1}", {}, status=200, errcode=None,
                auth="self"),
    ]

    # Device keys naming Alice.
    alice_keys = copy.deepcopy(alice.devices[0].stored_keys)
    forged_keys = dict(alice_keys, signatures={})
    forged_keys = sign_json(forged_keys, uid, signing_key())
    as_twin = {**copy.deepcopy(alice_keys), "user_id": mallory_id}
    for who, body in [
        ("mallory", alice_keys),  # Alice's own signed keys, replayed
        ("twin", alice_keys),  # ... from a device with the same ID
        ("eve", forged_keys),
        ("mallory", dict(forged_keys, device_id=mallory.user.device_id)),
        ("mallory", as_twin),  # Mallory's user ID, the device ID of her other device
        ("twin", dict(as_twin, device_id=d1)),
    ]:
        rows.append(Attempt(who, "POST", "keys/upload", {"device_keys": body}, 400,
                            "M_BAD_JSON"))
    # The device with the ID of Alice's first device is Mallory's: its counts (none, not
    # Alice's), its own keys (stored beside Alice's, not over them), and Mallory's
    # self-signing key may sign it (that signature is not on Alice's device).
    twin = new_device(mallory.twin)
    twin_keys = twin.device_keys()
    rows += [
        Attempt("twin", "POST", "keys/upload", {}, 200, None,
                answer={"one_time_key_counts": {SIGNED: 0}}),
        Attempt("twin", "POST", "keys/upload",
                {"device_keys": twin_keys, "one_time_keys": twin.otks(1)}, 200, None,
                answer={"one_time_key_counts": {SIGNED: 1}}),
        Attempt("mallory", "POST", "keys/signatures/upload",
                {mallory_id: {d0: sign_json(copy.deepcopy(twin_keys), mallory_id,
                                            mallory.cs.self_signing)}}, 200, {}),
    ]

    # Cross-signing keys naming Alice: new ones, and her own public ones replayed.
    fake = new_cross_signing(uid)
    for who in ("eve", "mallory"):
        rows += [
            Attempt(who, "POST", "keys/device_signing/upload", fake.body(), 400,
                    "M_INVALID_PARAM"),
            Attempt(who, "POST", "keys/device_signing/upload",
                    alice.cs.body(usk=False), 400, "M_INVALID_PARAM"),
            Attempt(who, "POST", "keys/device_signing/upload",
                    {"self_signing_key": fake.obj(fake.self_signing, "self_signing")}, 400,
                    "M_INVALID_PARAM"),
        ]

    # Signatures on Alice's keys.
    master_pub = public_key(alice.cs.master)
    master = alice.cs.obj(alice.cs.master, "master")
    alice_ssk_id = f"ed25519:{public_key(alice.cs.self_signing)}"
    m_usk_id = f"ed25519:{public_key(mallory.cs.user_signing)}"

    def as_alice_ssk(obj: dict[str, Any]) -> dict[str, Any]:
        """Signed under the key ID of Alice's self-signing key, by another key."""
        other = signing_key()
        signed = sign_json(copy.deepcopy(obj), uid, other)
        sig = signed["signatures"][uid].pop(f"ed25519:{public_key(other)}")
        signed["signatures"][uid][alice_ssk_id] = sig
        return signed

    by_mallory_usk = sign_json(copy.deepcopy(master), mallory_id, mallory.cs.user_signing)
    garbage = copy.deepcopy(by_mallory_usk)
    garbage["signatures"][mallory_id][m_usk_id] = "A" * 86
    changed = sign_json(dict(copy.deepcopy(master), usage=["master", "self_signing"]),
                        mallory_id, mallory.cs.user_signing)
    device1 = copy.deepcopy(alice.devices[1].stored_keys)
    signature_rows = [
        # "As Alice": her devices and master key signed under her self-signing key's ID.
        ({uid: {d1: as_alice_ssk(device1)}}, {uid: {d1: "M_NOT_FOUND"}}),
        ({uid: {d0: as_alice_ssk(alice_keys)}}, {uid: {d0: "M_NOT_FOUND"}}),
        ({uid: {master_pub: as_alice_ssk(master)}}, {uid: {master_pub: "M_INVALID_SIGNATURE"}}),
        # Alice's real self-signing signature on her device, replayed (ed25519 signatures
        # are deterministic: this is the one /keys/query shows everybody).
        ({uid: {d0: sign_json(copy.deepcopy(alice_keys), uid, alice.cs.self_signing)}},
         {uid: {d0: "M_NOT_FOUND"}}),
        # Mallory's user-signing key on Alice's devices (only a master key can be signed).
        ({uid: {d1: sign_json(copy.deepcopy(device1), mallory_id, mallory.cs.user_signing)}},
         {uid: {d1: "M_NOT_FOUND"}}),
        # Forged: a bad signature, and a valid one over an altered master key.
        ({uid: {master_pub: garbage}}, {uid: {master_pub: "M_INVALID_SIGNATURE"}}),
        ({uid: {master_pub: changed}}, {uid: {master_pub: "M_UNKNOWN"}}),
        # Alice's device and master key named as Mallory's own.
        ({mallory_id: {d1: sign_json(copy.deepcopy(device1), mallory_id,
                                     mallory.cs.self_signing)}},
         {mallory_id: {d1: "M_NOT_FOUND"}}),
        ({mallory_id: {master_pub: sign_json(copy.deepcopy(master), mallory_id,
                                             mallory.cs.self_signing)}},
         {mallory_id: {master_pub: "M_NOT_FOUND"}}),
    ]
    # Mallory's user-signing key on Alice's real master key is a real cross-signature,
    # accepted, and seen by Mallory alone: it is no change to Alice's keys.
    signature_rows.append(({uid: {master_pub: by_mallory_usk}}, {}))
    for body, failures in signature_rows:
        rows.append(Attempt("mallory", "POST", "keys/signatures/upload", body, 200, failures))
    # Eve has no user-signing key: she cannot sign Alice's master key at all.
    eve_signed = sign_json(copy.deepcopy(master), "@eve:x", signing_key())
    rows.append(Attempt("eve", "POST", "keys/signatures/upload",
                        {uid: {master_pub: eve_signed}}, 200,
                        {uid: {master_pub: "M_NOT_FOUND"}}))

    # Account data.
    for who in ("eve", "mallory", "twin"):
        for path in (
            f"user/{enc(uid)}/account_data/m.secret_storage.default_key",
            f"user/{enc(uid)}/account_data/m.cross_signing.master",
            f"user/{enc(uid)}/account_data/never.set",
            f"user/{enc(uid)}/rooms/{room}/account_data/org.example.note",
            f"user/{enc(uid)}/rooms/{room}/account_data/never.set",
            f"user/{enc(uid.upper())}/account_data/m.secret_storage.default_key",
            f"/_matrix/client/r0/user/{enc(uid)}/account_data/m.cross_signing.master",
        ):
            rows += [
                Attempt(who, "GET", path),
                Attempt(who, "PUT", path, {"key": "pwned"}),
            ]

    # To-device: sending reads nothing; Alice's transaction ID is no one else's.
    for who in ("mallory", "twin"):
        rows.append(Attempt(who, "PUT", f"sendToDevice/m.room.encrypted/{ALICE_TXN}",
                            {"messages": {mallory_id: {"*": {"from": who}}}}, 200, None,
                            answer={}))
    return rows


def run(api: Api, actors: dict[str, User], alice: Alice, attempt: Attempt) -> httpx.Response:
    user = actors[attempt.who]
    response = api.request(attempt.method, attempt.path, user, json=attempt.body)
    if attempt.auth is not None and "session" in response.json():
        session = response.json()["session"]
        auth = api.password_auth(alice.user if "alice" in attempt.auth else user, session)
        if attempt.auth == "alice":
            auth["password"] = "guessed"
        elif attempt.auth == "alice+self":
            auth["password"] = user.password
        response = api.request(attempt.method, attempt.path, user,
                               json={**(attempt.body or {}), "auth": auth})
    return response


def without_last_seen(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in ("last_seen_ts", "last_seen_ip")}
    return body


def check(response: httpx.Response, attempt: Attempt) -> str | None:
    """What is wrong with the answer, or None."""
    body = response.json()
    got: Any
    if isinstance(attempt.errcode, dict):
        failures = body.get("failures", {})
        got = {u: {k: f.get("errcode") for k, f in by_key.items()}
               for u, by_key in failures.items()}
    else:
        got = body.get("errcode")
    if (response.status_code, got) != (attempt.status, attempt.errcode) or (
        attempt.answer is not None and without_last_seen(body) != attempt.answer
    ):
        return f"got {response.status_code} {response.text[:300]}"
    return None


# -- the test ----------------------------------------------------------------------------------


def sync_events(api: Api, user: User, since: str | None = None) -> tuple[str, list[Any]]:
    params = {"timeout": "0", **({"since": since} if since else {})}
    body = ok(api.get("sync", user, params=params))
    return body["next_batch"], body["to_device"]["events"]


def test_no_user_can_read_or_change_another_users_e2ee_data(api: Api) -> None:
    eve = api.register()
    alice = setup_alice(api, eve)
    mallory = setup_mallory(api, alice)
    alice_devices = [d.user for d in alice.devices]
    before = snapshot(api, alice.user, sync_devices=alice_devices)
    # The snapshot sees what was set up.
    assert before["backup"][1]["version"] == alice.versions["current"]
    assert before[f"backup/{alice.versions['deleted']}"][0] == 404
    for device in alice.devices:
        seen = before[f"sync/{device.device_id}"]
        assert [e["content"] for e in seen["to_device"]] == alice.to_device[device.device_id]
        assert len(seen["account_data"]) >= 2 and seen["room_account_data"][alice.room_id]
        assert seen["otk_counts"] == {SIGNED: 3} and seen["unused_fallback"] == [SIGNED]

    actors = {"mallory": mallory.user, "twin": mallory.twin, "eve": eve}
    problems = []
    for attempt in attempts(alice, mallory):
        response = run(api, actors, alice, attempt)
        where = f"{attempt.who} {attempt.method} {attempt.path} {str(attempt.body)[:200]}"
        problem = check(response, attempt)
        if problem:
            problems.append(f"{where}: expected {attempt.status} {attempt.errcode}, {problem}")
        leaked = [s for s in alice.secrets if s in response.text]
        if leaked:
            problems.append(f"{where}: answer shows Alice's {leaked}")
    assert not problems, "\n".join(problems)

    # What Mallory and Eve can legitimately read shows nothing of Alice's.
    for who, user in actors.items():
        for response in (
            api.get("sync", user, params={"timeout": "0"}),
            api.post("keys/query", user, json={"device_keys": {alice.user_id: []}}),
            api.get("devices", user),
            api.get("room_keys/version", user),
            *(api.get("room_keys/keys", user, params={"version": v})
              for v in mallory.versions),
        ):
            assert response.status_code in (200, 404), response.text
            leaked = [s for s in alice.secrets if s in response.text]
            assert not leaked, (who, response.request.url, leaked)
    # Mallory's own to-device messages (sent with Alice's transaction ID) reached her; no
    # device of hers, not even the one named like Alice's, got any of Alice's.
    for user in (mallory.user, mallory.twin):
        _, events = sync_events(api, user)
        assert sorted(e["content"]["from"] for e in events) == ["mallory", "twin"]
    _, events = sync_events(api, eve)
    assert events == []
    # Mallory's /keys/query of Alice: public keys only, no user-signing key of Alice's.
    shown = ok(api.post("keys/query", mallory.user, json={"device_keys": {alice.user_id: []}}))
    assert alice.user_id not in shown.get("user_signing_keys", {})
    assert sorted(shown["device_keys"][alice.user_id]) == sorted(
        d.device_id for d in alice.devices)

    assert snapshot(api, alice.user, sync_devices=alice_devices) == before

    # Claiming one-time keys is allowed: one key of each device, signed by the device, and
    # nothing else; Alice's counts drop by one and all else stays.
    d0, d1 = (d.device_id for d in alice.devices)
    claim = ok(api.post("keys/claim", mallory.user, json={
        "one_time_keys": {alice.user_id: {d0: SIGNED, d1: SIGNED}}}))
    assert set(claim) == {"one_time_keys", "failures"} and claim["failures"] == {}
    assert set(claim["one_time_keys"]) == {alice.user_id}
    claimed = claim["one_time_keys"][alice.user_id]
    assert set(claimed) == {d0, d1}
    for device in alice.devices:
        ((key_id, key),) = claimed[device.device_id].items()
        assert alice.otks[device.device_id][key_id] == key["key"]
        assert set(key) == {"key", "signatures"}
        ed_id = f"ed25519:{device.device_id}"
        verify_key = decode_verify_key_bytes(
            ed_id, decode_base64(public_key(device.key)))
        verify_signed_json(key, alice.user_id, verify_key)
    # Guessed device IDs and algorithms get nothing, and say nothing.
    nothing = ok(api.post("keys/claim", eve, json={"one_time_keys": {
        alice.user_id: {"NOSUCHDEVICE": SIGNED, d0: "curve25519", d1: "x" * 255}}}))
    assert nothing == {"one_time_keys": {}, "failures": {}}
    after_claim = snapshot(api, alice.user, sync_devices=alice_devices)
    expected = copy.deepcopy(before)
    expected["otk_counts"][1]["one_time_key_counts"][SIGNED] -= 1
    for device in alice.devices:
        expected[f"sync/{device.device_id}"]["otk_counts"][SIGNED] -= 1
    assert after_claim == expected

    # Alice's devices get their queued to-device messages, once.
    for device in alice.devices:
        since, events = sync_events(api, device.user)
        assert [e["content"] for e in events] == alice.to_device[device.device_id]
        _, again = sync_events(api, device.user, since)
        assert again == []
