"""Fuzzing every E2EE endpoint: no request may crash (5xx), hang, half-write or poison anything.

Two parts, on both backends:

- Generated requests, from the spec's OpenAPI files (`key_backup.yaml`, `keys.yaml`,
  `cross_signing.yaml`, `to_device.yaml`, `device_management.yaml`): Hypothesis draws bodies
  from each operation's JSON schema (a small schema-to-strategy converter below), then often
  corrupts them (wrong types, numbers beyond 2**53 or 64 bits, floats, lone surrogates, long
  and odd strings); path and query parameters are the user's real IDs or hostile strings.
- Hand-written hostile requests, one for each rule of the edge checks.

Every answer must come within the client timeout, be below 500, and an error must be a
Matrix error body (`errcode`, `error`). After refused requests, a snapshot of the user's
backups, device keys, one-time-key counts and devices must be what it was before.

The default run is seeded and bounded (a few hundred requests per backend); `--run-slow`
runs many more (see README "Reliability" for the last long run's figures).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.e2e_keys import Device, new_cross_signing, setup_device
from tests.helpers import Api, User
from tests.snapshots import error_shape_ok, snapshot

SPEC = Path(__file__).resolve().parents[2] / "shared" / "matrix-spec" / "data" / "api"
CLIENT_SERVER = SPEC / "client-server"
E2EE_FILES = (
    "key_backup.yaml",
    "keys.yaml",
    "cross_signing.yaml",
    "to_device.yaml",
    "device_management.yaml",
)
ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!fuzz:localhost"
SESSION = "fuzzsession"
FAST_EXAMPLES = int(os.environ.get("MXKEYS_FUZZ_EXAMPLES", "12"))
SLOW_EXAMPLES = int(os.environ.get("MXKEYS_FUZZ_SLOW_EXAMPLES", "400"))


# -- the spec's schemas ---------------------------------------------------------------------


def _resolve(node: Any, here: Path) -> Any:
    """The schema with every `$ref` (relative files, `#/` fragments) inlined, and
    documentation-only keywords dropped."""
    if isinstance(node, list):
        return [_resolve(v, here) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        file, _, fragment = node["$ref"].partition("#")
        target = (here.parent / file) if file else here
        doc = yaml.safe_load(target.read_text())
        for part in filter(None, fragment.split("/")):
            doc = doc[part]
        resolved = _resolve(doc, target)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {"allOf": [resolved, _resolve(rest, here)]} if rest else resolved
    return {
        k: _resolve(v, here)
        for k, v in node.items()
        if k not in ("description", "example", "examples", "title") and not k.startswith("x-")
    }


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    path_params: tuple[str, ...]
    query: tuple[tuple[str, bool], ...]  # (name, required)
    body: Any = None  # the request body's JSON schema, if it has one

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def load_operations() -> list[Operation]:
    ops: list[Operation] = []
    for name in E2EE_FILES:
        file = CLIENT_SERVER / name
        doc = yaml.safe_load(file.read_text())
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                params = [_resolve(p, file) for p in op.get("parameters", [])]
                body = op.get("requestBody", {}).get("content", {}).get("application/json")
                ops.append(
                    Operation(
                        method.upper(),
                        path,
                        tuple(p["name"] for p in params if p["in"] == "path"),
                        tuple(
                            (p["name"], bool(p.get("required")))
                            for p in params
                            if p["in"] == "query"
                        ),
                        _resolve(body["schema"], file) if body else None,
                    )
                )
    return ops


OPERATIONS = load_operations()


# -- JSON schema -> Hypothesis strategy (the subset the spec's E2EE schemas use) -------------

HOSTILE_INTS = [2**53, -(2**53), 2**63, 2**64, -(2**63) - 1, 10**30]
HOSTILE_STRINGS = ["", "\ud800", "\udfff x", "a" * 300, "%2F/..", "@x:y", "!r:x", "é" * 200]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.sampled_from(HOSTILE_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _merge(schemas: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in schemas:
        s = _flatten(s)
        for k, v in s.items():
            if k == "properties":
                out.setdefault("properties", {}).update(v)
            elif k == "required":
                out["required"] = sorted(set(out.get("required", [])) | set(v))
            else:
                out[k] = v
    return out


def _flatten(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return _merge([*schema["allOf"], rest])
    return schema


def strategy(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid for `schema` (as far as this subset goes; invalid ones come from
    `corrupt`)."""
    schema = _flatten(schema)
    if depth > 6:
        return SCALARS
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([strategy(s, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([strategy({**schema, "type": k}, depth) for k in kind])
    if kind == "object" or "properties" in schema or "additionalProperties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        extra = schema.get("additionalProperties")
        pattern = schema.get("patternProperties")
        value_schema = extra if isinstance(extra, dict) else (
            next(iter(pattern.values())) if pattern else None
        )
        fixed = st.fixed_dictionaries(
            {k: strategy(v, depth + 1) for k, v in props.items() if k in required},
            optional={k: strategy(v, depth + 1) for k, v in props.items() if k not in required},
        )
        if value_schema is None:
            return fixed
        keys = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["@u:localhost"]))
        more = st.dictionaries(keys, strategy(value_schema, depth + 1), max_size=3)
        return st.tuples(fixed, more).map(lambda t: {**t[1], **t[0]})
    if kind == "array":
        return st.lists(strategy(schema.get("items", {}), depth + 1), max_size=3)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**53) + 1), schema.get("maximum", 2**53 - 1))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=30)
    return ANY_JSON


@st.composite
def corrupt(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one node somewhere replaced by something of another kind."""
    if not isinstance(value, dict | list) or not value or draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(SCALARS, ANY_JSON))
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: draw(corrupt(value[key]))}
    index = draw(st.integers(0, len(value) - 1))
    return [*value[:index], draw(corrupt(value[index])), *value[index + 1 :]]


# -- the fuzzed user --------------------------------------------------------------------------


@dataclass
class Target:
    user: User
    device: Device
    other: User  # a second user, whose IDs the fuzzer may aim at too
    version: str = "1"
    sent: int = 0
    server_errors: list[str] = field(default_factory=list)


def make_target(api: Api) -> Target:
    device = setup_device(api, otks=5, fallback=True)
    user = device.user
    cs = new_cross_signing(user.user_id)
    assert api.post("keys/device_signing/upload", user, json=cs.body()).status_code == 200
    body = {"algorithm": ALGORITHM, "auth_data": {"public_key": "abc"}}
    version = api.post("room_keys/version", user, json=body).json()["version"]
    key = {
        "first_message_index": 1,
        "forwarded_count": 0,
        "is_verified": False,
        "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"},
    }
    response = api.put(
        "room_keys/keys", user, json={"rooms": {ROOM: {"sessions": {SESSION: key}}}},
        params={"version": version},
    )
    assert response.status_code == 200, response.text
    return Target(user, device, api.register(), version)


def path_value(name: str, target: Target) -> st.SearchStrategy[str]:
    real = {
        "version": [target.version, "2", "0", "01", "-1", "9" * 30],
        "roomId": [ROOM, "!other:localhost"],
        "sessionId": [SESSION, "other"],
        "deviceId": [target.user.device_id, target.other.device_id, "NOPE"],
        "eventType": ["m.room_key_request", "m.room.encrypted"],
        "txnId": ["t1", "t2"],
    }.get(name, ["x"])
    return st.one_of(
        st.sampled_from(real), st.sampled_from(HOSTILE_STRINGS), st.text(min_size=1, max_size=20)
    )


def _encode_segment(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def request_for(
    draw: st.DrawFn, op: Operation, target: Target
) -> tuple[str, str, Any, dict, bool]:
    """(method, path, body, query, whether the body follows the schema)."""
    path = op.path
    for name in op.path_params:
        value = draw(path_value(name, target))
        path = path.replace("{" + name + "}", _encode_segment(value) or "x")
    params: dict[str, str] = {}
    for name, required in op.query:
        if required or draw(st.booleans()):
            value = draw(st.one_of(st.just(target.version), st.sampled_from(["0", "x", "", "99"])))
            params[name] = value
    body: Any = None
    valid = True
    if op.body is not None:
        body = draw(strategy(op.body))
        if draw(st.integers(0, 2)) > 0:
            body = draw(corrupt(body))
            valid = False
        if draw(st.integers(0, 9)) == 0:
            body = draw(bad_utf8(body))
            valid = False
    return op.method, path, body, params, valid


@st.composite
def bad_utf8(draw: st.DrawFn, value: Any) -> bytes:
    """`value` as JSON text with bytes that are not UTF-8 after one of its quotes (mostly
    inside a string, where a JSON parser has to notice them)."""
    text = json.dumps(value).encode()
    quotes = [i for i, byte in enumerate(text) if byte == ord('"')] or [len(text) - 1]
    at = draw(st.sampled_from(quotes)) + 1
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]))
    return text[:at] + junk + text[at:]


def send(api: Api, target: Target, method: str, path: str, body: Any, params: dict) -> int:
    content = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    response = api.request(
        method, path, target.user, content=content, params=params,
        headers={"Content-Type": "application/json"},
    )
    target.sent += 1
    where = f"{method} {path} {params} {content[:300] if content else b''!r}"
    if response.status_code >= 500:
        target.server_errors.append(f"{response.status_code} {where}: {response.text[:200]}")
    assert response.status_code < 500, (where, response.text)
    assert error_shape_ok(response), (where, response.status_code, response.text)
    return response.status_code


def run_fuzz(api: Api, op: Operation, examples: int, seed: int) -> Target:
    target = make_target(api)
    state = {"before": snapshot(api, target.user), "window": []}

    def check_unchanged() -> None:
        after = snapshot(api, target.user)
        assert after == state["before"], ("refused requests changed state", state["window"])
        state["window"] = []

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        database=None,
        phases=[Phase.generate],  # a server keeps state: replaying to shrink proves nothing
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        method, path, body, params, valid = data.draw(request_for(op, target))
        if valid and method != "GET" and state["window"]:
            check_unchanged()  # this one may well be accepted: check the refused ones first
        status = send(api, target, method, path, body, params)
        if status < 300 and method != "GET":
            # Accepted: the state may have changed, legitimately; the window starts again.
            # (A corrupted body that was accepted ends a window unchecked: rare, and still
            # checked for 5xx and the error shape.)
            state["before"] = snapshot(api, target.user)
            state["window"] = []
        else:
            state["window"].append((method, path, status))
            if len(state["window"]) >= 8:
                check_unchanged()

    hypothesis_seed(seed)(fuzz)()
    if state["window"]:
        check_unchanged()
    assert target.sent >= 1  # (operations without parameters or body have one request)
    return target


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_fuzz_spec_operations(api: Api, op: Operation) -> None:
    run_fuzz(api, op, FAST_EXAMPLES, seed=1234)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_fuzz_spec_operations_long(api: Api, op: Operation, backend: str) -> None:
    target = run_fuzz(api, op, SLOW_EXAMPLES, seed=int.from_bytes(op.id.encode()[:8], "big"))
    print(f"\nFUZZ {backend} {op.id}: {target.sent} requests, {len(target.server_errors)} 5xx")


def test_spec_files_cover_the_e2ee_endpoints() -> None:
    ids = {op.id for op in OPERATIONS}
    assert "PUT /room_keys/keys" in ids and "POST /keys/claim" in ids
    assert "PUT /sendToDevice/{eventType}/{txnId}" in ids and "POST /delete_devices" in ids
    assert len(OPERATIONS) == 26
    assert all(op.body is not None for op in OPERATIONS if op.method in ("POST", "PUT"))


# -- hand-written hostile requests --------------------------------------------------------------


def _raw_key(fmi: bytes = b"1", data: bytes = b'{"ciphertext": "c"}') -> bytes:
    return (
        b'{"first_message_index": ' + fmi + b', "forwarded_count": 0, "is_verified": false, '
        b'"session_data": ' + data + b"}"
    )


def _rooms(key: bytes, room: bytes = b"!r:x") -> bytes:
    return b'{"rooms": {"' + room + b'": {"sessions": {"s": ' + key + b"}}}}"


DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
NESTED_101 = b"[" * 101 + b"]" * 101


def hostile_cases(t: Target) -> list[tuple[str, str, Any, dict[str, str]]]:
    """(method, path, body: JSON value or raw bytes, query) that must all be refused."""
    me, dev = t.user.user_id, t.user.device_id
    v = {"version": t.version}
    meb, devb = me.encode(), dev.encode()
    otk = {"key": "k", "signatures": {}}
    cases: list[tuple[str, str, Any, dict[str, str]]] = [
        # backups: wrong JSON types inside rooms/sessions
        ("PUT", "room_keys/keys", {"rooms": {"!r:x": {"sessions": {"s": 5}}}}, v),
        ("PUT", "room_keys/keys", {"rooms": {"!r:x": []}}, v),
        ("PUT", "room_keys/keys", {"rooms": []}, v),
        ("PUT", "room_keys/keys", {"rooms": {"!r:x": {"sessions": []}}}, v),
        ("PUT", "room_keys/keys", {"rooms": {"!r:x": {"sessions": {"s": {}}}}}, v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b"[1]")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'"text"')), v),
        # numbers: infinity, beyond 2**53, beyond 64 bits, floats, negative
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"1e999")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"9007199254740992")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"18446744073709551616")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"1.5")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"-1")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(fmi=b"NaN")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": 1e999}')), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": -1e999}')), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": %d}' % 10**30)), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": [' + NESTED_101 + b"]}")), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": ' + DEEP + b"}")), v),
        # strings: lone surrogates, NUL, IDs too long or not IDs
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": "\\ud800"}')), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(), room=b"!r\\udc00:x"), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(), room=b"!" + b"r" * 300), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(), room=b"no-bang:x"), v),
        ("PUT", "room_keys/keys", b"\xff\xfe{}", v),
        ("PUT", f"room_keys/keys/{quote('!r:x', safe='')}/s", DEEP, v),
        ("PUT", f"room_keys/keys/{quote('!r:x', safe='')}/s", DEEP_OBJECT, v),
        ("PUT", f"room_keys/keys/{quote('!r:x', safe='')}/s", _raw_key(fmi=b"1e999"), v),
        ("PUT", f"room_keys/keys/{quote('!r:x', safe='')}", b'{"sessions": {"s": 1.0}}', v),
        ("PUT", "room_keys/keys", {"rooms": {}}, {"version": "1" * 30}),
        ("PUT", "room_keys/keys", {"rooms": {}}, {"version": "x"}),
        ("POST", "room_keys/version", {"algorithm": 5, "auth_data": {}}, {}),
        ("POST", "room_keys/version", {"algorithm": ALGORITHM, "auth_data": []}, {}),
        ("POST", "room_keys/version", b'{"algorithm": "%s", "auth_data": {"x": 1e999}}'
         % ALGORITHM.encode(), {}),
        ("POST", "room_keys/version", b'{"algorithm": "%s", "auth_data": {"x": %d}}'
         % (ALGORITHM.encode(), 2**64), {}),
        ("POST", "room_keys/version", b'{"algorithm": "%s", "auth_data": %s}'
         % (ALGORITHM.encode(), DEEP_OBJECT), {}),
        ("PUT", f"room_keys/version/{t.version}",
         {"algorithm": ALGORITHM, "auth_data": {}, "version": 5}, {}),
        ("PUT", f"room_keys/version/{t.version}",
         {"algorithm": ALGORITHM, "auth_data": {"n": 2**60}}, {}),
        # /keys/upload: a failure anywhere (even the fallback key) stores nothing
        ("POST", "keys/upload", {"one_time_keys": {"signed_curve25519:a": 5}}, {}),
        ("POST", "keys/upload", {"one_time_keys": []}, {}),
        ("POST", "keys/upload", {"one_time_keys": {"signed_curve25519:a": {"key": 5}}}, {}),
        ("POST", "keys/upload", {"one_time_keys": {"noalgorithm": "x"}}, {}),
        ("POST", "keys/upload", {"one_time_keys": {"signed_curve25519:n1": otk},
                                 "fallback_keys": {"x": 5}}, {}),
        ("POST", "keys/upload", {"one_time_keys": {"signed_curve25519:n2": otk},
                                 "fallback_keys": {"signed_curve25519:f": {"key": "x",
                                                                           "signatures": []}}}, {}),
        ("POST", "keys/upload", {"one_time_keys": {"signed_curve25519:n3": otk},
                                 "fallback_keys": {"signed_curve25519:f1": otk,
                                                   "signed_curve25519:f2": otk}}, {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:n4": '
         b'{"key": "x", "signatures": {}, "n": 1e999}}}', {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:n5": '
         b'{"key": "x", "signatures": {}, "n": 123456789012345678901234567890}}}', {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:n6": '
         b'{"key": "x", "signatures": {}, "n": 1.5}}}', {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:n7": '
         b'{"key": "\\udc00", "signatures": {}}}}', {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:n8": ' + DEEP + b"}}", {}),
        ("POST", "keys/upload", {"one_time_keys": {"a" * 300 + ":k": "x"}}, {}),
        ("POST", "keys/upload", b'{"fallback_keys": {"signed_curve25519:f3": '
         b'{"key": "x", "signatures": {}, "n": %d}}}' % 2**64, {}),
        ("POST", "keys/upload", {"device_keys": {"user_id": me, "device_id": dev,
                                                 "algorithms": [], "keys": {},
                                                 "signatures": {}, "x": 2**60}}, {}),
        ("POST", "keys/upload", {"device_keys": {"user_id": me, "device_id": dev,
                                                 "algorithms": [], "keys": {},
                                                 "signatures": {}, "x": 0.5}}, {}),
        ("POST", "keys/upload", {"device_keys": {"user_id": 5, "device_id": dev,
                                                 "algorithms": [], "keys": {},
                                                 "signatures": {}}}, {}),
        ("POST", "keys/upload", {"device_keys": {"user_id": t.other.user_id, "device_id": dev,
                                                 "algorithms": [], "keys": {},
                                                 "signatures": {}}}, {}),
        ("POST", "keys/upload", {"device_keys": []}, {}),
        ("POST", "keys/upload", {"device_keys": {"user_id": me, "device_id": dev,
                                                 "algorithms": [], "keys": [],
                                                 "signatures": {}}}, {}),
        ("POST", "keys/query", {"device_keys": {me: [5]}}, {}),
        ("POST", "keys/query", {"device_keys": {"not-a-user": []}}, {}),
        ("POST", "keys/query", {"device_keys": {"@" + "a" * 300 + ":localhost": []}}, {}),
        ("POST", "keys/query", {"device_keys": {me: ["d" * 300]}}, {}),
        ("POST", "keys/query", {"device_keys": {me: []}, "timeout": 2**60}, {}),
        ("POST", "keys/query", {"device_keys": {me: []}, "timeout": -1}, {}),
        ("POST", "keys/claim", {"one_time_keys": {me: {dev: 5}}}, {}),
        ("POST", "keys/claim", {"one_time_keys": {me: []}}, {}),
        ("POST", "keys/claim", {"one_time_keys": {"bad": {}}}, {}),
        ("POST", "keys/claim", {"one_time_keys": {me: {"x" * 300: "signed_curve25519"}}}, {}),
        ("GET", "keys/changes", None, {"from": "x", "to": "y"}),
        # cross-signing
        ("POST", "keys/device_signing/upload", {"master_key": []}, {}),
        ("POST", "keys/device_signing/upload", {"master_key": {"user_id": me, "usage": "master",
                                                               "keys": {}}}, {}),
        ("POST", "keys/device_signing/upload", {"master_key": {
            "user_id": me, "usage": ["master"], "keys": {"ed25519:é": "é"}}}, {}),
        ("POST", "keys/signatures/upload", {me: {dev: []}}, {}),
        ("POST", "keys/signatures/upload", {me: []}, {}),
        ("POST", "keys/signatures/upload", {"bad": {}}, {}),
        ("POST", "keys/signatures/upload", {me: {dev: {"n": 0.5}}}, {}),
        # to-device
        ("PUT", "sendToDevice/m.x/h1", {"messages": {me: {dev: 5}}}, {}),
        ("PUT", "sendToDevice/m.x/h2", {"messages": {me: []}}, {}),
        ("PUT", "sendToDevice/m.x/h3", {"messages": []}, {}),
        ("PUT", "sendToDevice/m.x/h4", {"messages": {"bad": {}}}, {}),
        ("PUT", "sendToDevice/m.x/h5", b'{"messages": {"%s": {"%s": {"a": 1e999}}}}'
         % (meb, devb), {}),
        ("PUT", "sendToDevice/m.x/h6", b'{"messages": {"%s": {"%s": {"a": %d}}}}'
         % (meb, devb, 2**70), {}),
        ("PUT", "sendToDevice/m.x/h7", b'{"messages": {"%s": {"%s": %s}}}'
         % (meb, devb, DEEP_OBJECT), {}),
        ("PUT", "sendToDevice/m.x/" + "t" * 300, {"messages": {}}, {}),
        ("PUT", "sendToDevice/" + "e" * 300 + "/t", {"messages": {}}, {}),
        ("PUT", "sendToDevice/m.x/h8", {"messages": {me: {"d" * 300: {}}}}, {}),
        # invalid UTF-8 inside strings (typed decoding reports it unlike other JSON errors),
        # in keys, in values, and inside parts kept undecoded (one-time keys, session_data)
        ("POST", "keys/claim", b'{"one_time_keys": {"\xff": {}}}', {}),
        ("POST", "keys/query", b'{"device_keys": {"%s": ["\xc3"]}}' % meb, {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:u1": "\xff"}}', {}),
        ("POST", "keys/upload", b'{"one_time_keys": {"signed_curve25519:u2": '
         b'{"key": "\xed\xa0\x80", "signatures": {}}}}', {}),
        ("POST", "keys/upload", b'{"device_keys": {"user_id": "\xff"}}', {}),
        ("POST", "keys/device_signing/upload", b'{"master_key": {"user_id": "\xff"}}', {}),
        ("POST", "keys/signatures/upload", b'{"%s": {"\xff": {}}}' % meb, {}),
        ("PUT", "sendToDevice/m.x/u1", b'{"messages": {"%s": {"\xff": {}}}}' % meb, {}),
        ("PUT", "room_keys/keys", _rooms(_raw_key(data=b'{"a": "\xff"}')), v),
        ("PUT", "room_keys/keys", _rooms(_raw_key(), room=b"!\xff:x"), v),
        ("POST", "room_keys/version", b'{"algorithm": "\xff", "auth_data": {}}', {}),
        ("POST", "delete_devices", b'{"devices": ["\xff"]}', {}),
        # devices and UIA
        ("POST", "delete_devices", b"not json", {}),
        ("POST", "delete_devices", b"", {}),
        ("POST", "delete_devices", DEEP, {}),
        ("POST", "delete_devices", {"devices": [5]}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": []}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {"session": 5}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {"type": 5}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {"type": "m.login.password",
                                                               "identifier": []}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5},
            "password": "x"}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {
            "type": "m.login.password", "user": "@\ud800:x", "password": "x"}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {
            "type": "m.login.password", "user": me, "password": 5}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {
            "type": "m.login.password", "user": me, "password": "wrong"}}, {}),
        ("POST", "delete_devices", {"devices": [dev], "auth": {
            "type": "m.login.password", "session": "nope", "user": me, "password": "x"}}, {}),
        ("DELETE", f"devices/{dev}", b"[1]", {}),
        ("DELETE", f"devices/{dev}", b'{"auth": "x"}', {}),
        ("DELETE", f"devices/{dev}", {"auth": {"type": "m.login.password", "user": me,
                                               "password": "wrong"}}, {}),
        ("PUT", f"devices/{dev}", {"display_name": 5}, {}),
        ("PUT", f"devices/{dev}", DEEP_OBJECT, {}),
        ("PUT", f"devices/{t.other.device_id}", {"display_name": "mine now"}, {}),
    ]
    return cases


def test_hostile_requests_are_refused_without_trace(api: Api) -> None:
    target = make_target(api)
    before = snapshot(api, target.user)
    failures = []
    for method, path, body, params in hostile_cases(target):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        if body is None:
            content = None
        response = api.request(method, path, target.user, content=content, params=params)
        where = f"{method} {path[:60]} {params} {(content or b'')[:240]!r}"
        if not 400 <= response.status_code < 500 or not error_shape_ok(response):
            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            continue
        after = snapshot(api, target.user)
        if after != before:
            failures.append(f"{where}: changed state")
            before = after
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "header",
    [b"Bearer \xe9\xff", b"Bearer \xc3\xa9", b"\xff", b"Bearer", b"Basic abc", b"Bearer \x80\x80"],
)
def test_odd_authorization_headers(api: Api, header: bytes) -> None:
    response = api.http.get("/_matrix/client/v3/account/whoami", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    assert response.json()["errcode"] in ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, NESTED_101])
def test_deep_nesting_is_refused_everywhere(api: Api, body: bytes) -> None:
    user = api.register()
    for method, path in (
        ("POST", "keys/query"),
        ("POST", "keys/upload"),
        ("POST", "keys/device_signing/upload"),
        ("PUT", "sendToDevice/m.x/deep"),
        ("PUT", f"user/{quote(user.user_id)}/account_data/m.deep"),
        ("POST", "login"),
    ):
        response = api.request(method, path, user, content=body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["errcode"] == "M_BAD_JSON", (path, response.text)
