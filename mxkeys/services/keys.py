"""Device keys: upload, query and claim (spec: "End-to-End Encryption", keys.yaml).

Key objects are validated here, stored as JSON text and served back without re-encoding
where nothing needs merging: a /keys/query answer splices the stored text of each device into
the response (`msgspec.Raw`), adding only `unsigned`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mxkeys.errors import MatrixError, bad_json, invalid_param, missing_param, too_large
from mxkeys.ids import MAX_DEVICE_ID_LENGTH, split_user_id
from mxkeys.json_checks import check_json, decode_checked
from mxkeys.services.ratelimit import RateLimiter
from mxkeys.storage.device_keys import (
    MASTER,
    SELF_SIGNING,
    USER_SIGNING,
    DeviceKeysStore,
    NewKey,
    OneTimeKeyConflict,
    OneTimeKeyLimit,
    OneTimeKeys,
    Signature,
)

# The algorithm whose count /keys/upload always reports (0 when none), as Synapse does:
# clients rely on seeing it to know the server counts their keys.
SIGNED_CURVE25519 = "signed_curve25519"
# Algorithm names and key IDs (spec: namespaced identifiers, at most 255 characters).
MAX_ID_LENGTH = 255
DEVICE_KEYS_REQUIRED = ("user_id", "device_id", "algorithms", "keys", "signatures")
USAGE_FIELDS = {
    MASTER: "master_keys",
    SELF_SIGNING: "self_signing_keys",
    USER_SIGNING: "user_signing_keys",
}

# Sorted keys, compact: equal objects get equal text, so "unchanged" is a text comparison.
_encoder = msgspec.json.Encoder(order="sorted")
_raw_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class KeyObject(msgspec.Struct):
    """What a one-time or fallback key object must hold (other fields are kept as sent)."""

    key: str
    signatures: dict[str, dict[str, str]]


_key_decoder = msgspec.json.Decoder(str | KeyObject)


class PlainKeyObject(msgspec.Struct, forbid_unknown_fields=True):
    """A key object with only the fields clients send (`fallback` on fallback keys). Holding
    only strings and a boolean, it needs none of `json_checks`' walk: decoding it is the
    whole check, the common case's single pass. Anything else takes the general path."""

    key: str
    signatures: dict[str, dict[str, str]]
    fallback: bool = False


_plain_key_decoder = msgspec.json.Decoder(str | PlainKeyObject)
# All of an upload's one-time keys checked in one pass, when every one is plain.
_plain_keys_decoder = msgspec.json.Decoder(dict[str, str | PlainKeyObject])


def _algorithms_of_valid_names(keys: Iterable[str]) -> set[str] | None:
    """The algorithms of these `<algorithm>:<key_id>` names, or None if a name is not one
    (each part 1 to MAX_ID_LENGTH characters)."""
    algorithms: set[str] = set()
    for name in keys:
        algorithm, _, key_id = name.partition(":")
        if not 0 < len(algorithm) <= MAX_ID_LENGTH or not 0 < len(key_id) <= MAX_ID_LENGTH:
            return None
        algorithms.add(algorithm)
    return algorithms


def _all_plain(text: bytes) -> bool:
    """Whether every key of this JSON object is a plain key object or a bare key string."""
    try:
        _plain_keys_decoder.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


# Until federation exists, keys of users on other servers cannot be fetched.
REMOTE_FAILURE = {"status": 503, "message": "Federation is not supported by this server yet"}


def encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def decode_json(text: str | bytes) -> Any:
    return _decoder.decode(text)


def same_one_time_key(stored_json: str, new_json: str) -> bool:
    """Whether a re-uploaded one-time key is the stored one. Signatures may legitimately differ
    between upload attempts, so they are not compared (as in Synapse)."""
    old, new = decode_json(stored_json), decode_json(new_json)
    if isinstance(old, dict) and isinstance(new, dict):
        old.pop("signatures", None)
        new.pop("signatures", None)
    return bool(old == new)


def add_signatures(obj: dict[str, Any], signatures: Iterable[Signature]) -> None:
    """Merge uploaded signatures into a key object's `signatures`."""
    merged = obj.get("signatures")
    if not isinstance(merged, dict):
        merged = obj["signatures"] = {}
    for s in signatures:
        by_signer = merged.get(s.signer_user_id)
        if not isinstance(by_signer, dict):
            by_signer = merged[s.signer_user_id] = {}
        by_signer[s.signing_key_id] = s.signature


@dataclass(slots=True)
class _Targets:
    """Users of a /keys/query or /keys/claim request, split by where they live."""

    local: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, Any] = field(default_factory=dict)


class KeyService:
    def __init__(
        self,
        store: DeviceKeysStore,
        server_name: str,
        max_one_time_keys: int,
        claim_limiter: RateLimiter,
        max_keys_per_upload: int = 1000,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.max_one_time_keys = max_one_time_keys
        self.claim_limiter = claim_limiter
        self.max_keys_per_upload = max_keys_per_upload

    # -- /keys/upload -----------------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        device_id: str,
        device_keys: dict[str, Any] | None,
        one_time_keys: Mapping[str, msgspec.Raw] | None,
        fallback_keys: Mapping[str, msgspec.Raw] | None,
    ) -> dict[str, int]:
        """Validate the whole request, then store it in one transaction (a 4xx stores
        nothing). Returns the device's unclaimed one-time key counts.

        Keys arrive as raw JSON text: one-time keys are stored as sent after validation (on
        SQLite without the whitespace between tokens), fallback keys re-encoded with sorted
        keys so that a re-upload compares equal."""
        sent = len(one_time_keys or ()) + len(fallback_keys or ())
        if sent > self.max_keys_per_upload:
            raise too_large(
                f"At most {self.max_keys_per_upload} one-time and fallback keys per upload "
                f"({sent} sent)"
            )
        device_keys_json = (
            self._check_device_keys(device_keys, user_id, device_id)
            if device_keys is not None
            else None
        )
        otks = self._one_time_keys(one_time_keys) if one_time_keys else None
        fallbacks = self._check_keys("fallback_keys", fallback_keys or {}, canonical=True)
        if one_time_keys and len(one_time_keys) > self.max_one_time_keys:
            per_algorithm = Counter(name.partition(":")[0] for name in one_time_keys)
            for algorithm, n in per_algorithm.items():
                if n > self.max_one_time_keys:
                    raise self._too_many(algorithm, n)
        seen: set[str] = set()
        for key in fallbacks:
            if key.algorithm in seen:
                # The spec allows one fallback key per algorithm in an upload.
                raise invalid_param(f"fallback_keys: more than one key for {key.algorithm}")
            seen.add(key.algorithm)
        try:
            counts = await self.store.upload_keys(
                user_id,
                device_id,
                device_keys_json,
                otks,
                fallbacks,
                self.max_one_time_keys,
                same_one_time_key,
            )
        except OneTimeKeyConflict as e:
            # Synapse answers 400 M_UNKNOWN here; the message names the key.
            raise MatrixError(
                400,
                "M_UNKNOWN",
                f"One-time key {e.key_name} already exists with different content",
            ) from None
        except OneTimeKeyLimit as e:
            raise self._too_many(e.algorithm, e.count) from None
        counts.setdefault(SIGNED_CURVE25519, 0)
        return counts

    def _too_many(self, algorithm: str, count: int) -> MatrixError:
        # Our own rule (the spec sets no limit): 400 M_LIMIT_EXCEEDED, without retry_after_ms
        # since waiting does not help; the device must wait for its keys to be claimed.
        return MatrixError(
            400,
            "M_LIMIT_EXCEEDED",
            f"Too many unclaimed one-time keys for {algorithm}: this upload would leave "
            f"{count}, the limit is {self.max_one_time_keys}",
        )

    @staticmethod
    def _check_device_keys(keys: dict[str, Any], user_id: str, device_id: str) -> str:
        for name in DEVICE_KEYS_REQUIRED:
            if name not in keys:
                raise missing_param(f"device_keys.{name} is required")
        if not isinstance(keys["user_id"], str) or not isinstance(keys["device_id"], str):
            raise bad_json("device_keys.user_id and device_keys.device_id must be strings")
        # Synapse answers a mismatch with 400 M_BAD_JSON; so do we.
        if keys["user_id"] != user_id:
            raise bad_json("device_keys.user_id does not match the authenticated user")
        if keys["device_id"] != device_id:
            raise bad_json("device_keys.device_id does not match the authenticated device")
        algorithms = keys["algorithms"]
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise bad_json("device_keys.algorithms must be a list of strings")
        identity = keys["keys"]
        if not isinstance(identity, dict) or not all(isinstance(v, str) for v in identity.values()):
            raise bad_json("device_keys.keys must map key IDs to strings")
        for name in identity:
            algorithm, sep, key_device = name.partition(":")
            if not algorithm or not sep or key_device != device_id:
                raise bad_json(f"device_keys.keys: {name!r} is not named <algorithm>:{device_id}")
        signatures = keys["signatures"]
        if not isinstance(signatures, dict) or not all(
            isinstance(by_key, dict) and all(isinstance(s, str) for s in by_key.values())
            for by_key in signatures.values()
        ):
            raise bad_json("device_keys.signatures must map user IDs to maps of signatures")
        # `unsigned` is the server's to fill in on query (Synapse replaces it, too). The self-
        # signature is the client's to check, as in Synapse: the spec does not ask servers to.
        stored = {k: v for k, v in keys.items() if k != "unsigned"}
        # Signed JSON: canonical numbers only (integers in range), bounded nesting.
        check_json(stored, "device_keys", canonical=True)
        return encode_json(stored)

    def _one_time_keys(self, keys: Mapping[str, msgspec.Raw]) -> OneTimeKeys:
        """The upload's one-time keys, checked: all in one pass when every one is a plain key
        object (or a bare key string) under a valid name, else one by one (keys with other
        fields; the exact error for a bad one)."""
        text = _raw_encoder.encode(keys)
        algorithms = _algorithms_of_valid_names(keys)
        if algorithms is not None and _all_plain(text):
            return OneTimeKeys(text, len(keys), algorithms)
        return OneTimeKeys.of(self._check_keys("one_time_keys", keys, canonical=False))

    @staticmethod
    def _check_keys(
        field_name: str, keys: Mapping[str, msgspec.Raw], canonical: bool
    ) -> list[NewKey]:
        out: list[NewKey] = []
        for name, raw in keys.items():
            algorithm, sep, key_id = name.partition(":")
            if not algorithm or not sep or not key_id:
                raise bad_json(f"{field_name}: {name!r} is not named <algorithm>:<key_id>")
            if len(algorithm) > MAX_ID_LENGTH or len(key_id) > MAX_ID_LENGTH:
                raise invalid_param(f"{field_name}: key names are at most 255 characters each")
            try:
                _plain_key_decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                KeyService._check_general_key(f"{field_name}.{name}", raw)
            text = encode_json(decode_json(bytes(raw))) if canonical else bytes(raw).decode()
            out.append(NewKey(algorithm, key_id, text))
        return out

    @staticmethod
    def _check_general_key(label: str, raw: msgspec.Raw) -> None:
        """A key with other fields than `PlainKeyObject`'s, or an invalid one: signed JSON (or
        a bare key) with canonical numbers only and bounded nesting, since it is stored as
        sent and must decode again whenever it is read back."""
        decode_checked(bytes(raw), label, canonical=True)
        try:
            _key_decoder.decode(raw)
        except msgspec.ValidationError as e:
            raise bad_json(
                f"{label} must be a string or an object with a string 'key' and 'signatures': {e}"
            ) from None

    # -- /keys/query ------------------------------------------------------------------------

    def _split_targets(self, request: Mapping[str, Any]) -> _Targets:
        targets = _Targets()
        for user_id, value in request.items():
            parts = split_user_id(user_id)
            if parts is None:
                raise invalid_param(f"Invalid user ID: {user_id!r}")
            if parts[1] == self.server_name:
                targets.local[user_id] = value
            else:
                targets.failures[parts[1]] = REMOTE_FAILURE
        return targets

    async def query(self, requester: str, device_keys: Mapping[str, list[str]]) -> dict[str, Any]:
        if any(len(d) > MAX_DEVICE_ID_LENGTH for ids in device_keys.values() for d in ids):
            raise invalid_param("Device IDs are at most 255 characters")
        targets = self._split_targets(device_keys)
        all_devices_of = [u for u, ids in targets.local.items() if not ids]
        some_devices = [(u, d) for u, ids in targets.local.items() if ids for d in ids]
        found = await self.store.query_keys(requester, all_devices_of, some_devices)

        sigs: dict[tuple[str, str], list[Signature]] = defaultdict(list)
        for s in found.signatures:
            sigs[(s.target_user_id, s.target_key_id)].append(s)

        result_devices: dict[str, dict[str, Any]] = {u: {} for u in found.existing_users}
        for d in found.devices:
            extra = sigs.get((d.user_id, d.device_id)) if sigs else None
            if extra:
                obj = decode_json(d.key_json)
                add_signatures(obj, extra)
                obj["unsigned"] = (
                    {"device_display_name": d.display_name} if d.display_name is not None else {}
                )
                entry: Any = obj
            else:
                # Splice `unsigned` into the stored object text (a non-empty JSON object
                # without `unsigned`): no decoding and re-encoding of every device.
                if d.display_name is None:
                    tail = ',"unsigned":{}}'
                else:
                    name = encode_json(d.display_name)
                    tail = ',"unsigned":{"device_display_name":' + name + "}}"
                entry = msgspec.Raw((d.key_json[:-1] + tail).encode())
            result_devices[d.user_id][d.device_id] = entry

        response: dict[str, Any] = {
            "device_keys": result_devices,
            "failures": targets.failures,
            "master_keys": {},
            "self_signing_keys": {},
        }
        if requester in targets.local:
            response["user_signing_keys"] = {}
        for key in found.cross_signing_keys:
            extra = sigs.get((key.user_id, key.key_id)) if key.usage == MASTER else None
            if extra:
                obj = decode_json(key.key_json)
                add_signatures(obj, extra)
                entry = obj
            else:
                entry = msgspec.Raw(key.key_json.encode())
            response[USAGE_FIELDS[key.usage]][key.user_id] = entry
        return response

    # -- /keys/claim ------------------------------------------------------------------------

    async def claim(
        self, requester: str, one_time_keys: Mapping[str, Mapping[str, str]]
    ) -> dict[str, Any]:
        await self.claim_limiter.check(requester)
        for by_device in one_time_keys.values():
            for device_id, algorithm in by_device.items():
                if len(device_id) > MAX_DEVICE_ID_LENGTH or len(algorithm) > MAX_ID_LENGTH:
                    raise invalid_param("Device IDs and algorithms are at most 255 characters")
        targets = self._split_targets(one_time_keys)
        wanted = [
            (user_id, device_id, algorithm)
            for user_id, by_device in targets.local.items()
            for device_id, algorithm in by_device.items()
        ]
        claimed = await self.store.claim_keys(wanted)
        result: dict[str, dict[str, dict[str, msgspec.Raw]]] = {}
        for c in claimed:
            result.setdefault(c.user_id, {})[c.device_id] = {
                f"{c.algorithm}:{c.key_id}": msgspec.Raw(c.key_json.encode())
            }
        return {"one_time_keys": result, "failures": targets.failures}
