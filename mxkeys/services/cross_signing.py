"""Cross-signing: uploading the master, self-signing and user-signing keys, and signatures
made with them (spec: "Cross-signing", cross_signing.yaml).

Signatures are checked as the spec's "Signing JSON" appendix says: ed25519 over the
canonical JSON of the object without `signatures` and `unsigned` (`signedjson`).

Where the spec names no error code, we answer as Synapse does (noted at each place).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from signedjson.types import VerifyKey
from unpaddedbase64 import decode_base64

from mxkeys.errors import MatrixError, forbidden, invalid_param, missing_param
from mxkeys.ids import split_user_id
from mxkeys.json_checks import check_json
from mxkeys.services.keys import decode_json, encode_json
from mxkeys.services.uia import PASSWORD, UiaRequest, UiaService
from mxkeys.storage.device_keys import (
    MASTER,
    SELF_SIGNING,
    USER_SIGNING,
    CrossSigningKey,
    DeviceKeysStore,
    Signature,
    SigningContext,
)

UIA_FLOWS = [[PASSWORD]]
ED25519 = "ed25519"
# A state change between deciding on UIA and storing makes us decide again, this often.
_ATTEMPTS = 3


def invalid_signature(error: str = "Invalid signature") -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", error)


def verify_key_for(key_id: str, public_key: str) -> VerifyKey:
    """The ed25519 key `ed25519:<name>` with unpadded-base64 `public_key`; ValueError if not."""
    algorithm, _, _ = key_id.partition(":")
    if algorithm != ED25519:
        raise ValueError(f"unsupported key algorithm {algorithm}")
    try:
        return decode_verify_key_bytes(key_id, decode_base64(public_key))
    except Exception as e:  # binascii / nacl errors
        raise ValueError(f"not an ed25519 public key: {e}") from None


def signature_valid(obj: dict[str, Any], user_id: str, key: VerifyKey) -> bool:
    try:
        verify_signed_json(obj, user_id, key)
    except (SignatureVerifyException, KeyError, TypeError, ValueError):
        # (Malformed `signatures`, e.g. a number where an object belongs: not a valid
        # signature either.)
        return False
    return True


def strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a signature covers."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


@dataclass(frozen=True, slots=True)
class ParsedKey:
    usage: str
    public_key: str
    verify_key: VerifyKey
    obj: dict[str, Any]

    def to_store(self, user_id: str) -> CrossSigningKey:
        return CrossSigningKey(user_id, self.usage, self.public_key, encode_json(self.obj))


class SignatureFailure(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error

    def to_json(self) -> dict[str, str]:
        return {"errcode": self.errcode, "error": self.error}


def _not_found(error: str) -> SignatureFailure:
    return SignatureFailure("M_NOT_FOUND", error)


def _bad_signature(error: str = "Invalid signature") -> SignatureFailure:
    return SignatureFailure("M_INVALID_SIGNATURE", error)


# Synapse: 400 "Key does not match" (M_UNKNOWN) when the signed object is not the stored one.
_MISMATCH = SignatureFailure("M_UNKNOWN", "The signed object does not match the stored key")


class CrossSigningService:
    def __init__(self, store: DeviceKeysStore, uia: UiaService) -> None:
        self.store = store
        self.uia = uia

    # -- /keys/device_signing/upload ----------------------------------------------------------

    async def is_key_id(self, user_id: str, key_id: str) -> bool:
        """Whether `key_id` names one of the user's cross-signing keys (a device may not
        take that ID, spec: login `device_id`)."""
        keys, _ = await self.store.get_cross_signing_state(user_id, ())
        return any(key.key_id == key_id for key in keys.values())

    async def upload_keys(
        self,
        user_id: str,
        master_key: dict[str, Any] | None,
        self_signing_key: dict[str, Any] | None,
        user_signing_key: dict[str, Any] | None,
        auth: Any,
    ) -> None:
        given = {
            usage: self._parse_key(obj, user_id, usage)
            for usage, obj in (
                (MASTER, master_key),
                (SELF_SIGNING, self_signing_key),
                (USER_SIGNING, user_signing_key),
            )
            if obj is not None
        }
        if not given:
            return
        authenticated = False
        for _ in range(_ATTEMPTS):
            stored, clashes = await self.store.get_cross_signing_state(
                user_id, [k.public_key for k in given.values()]
            )
            if clashes:
                # The spec: cross-signing public keys and device IDs share a namespace.
                raise forbidden(f"Key ID in use: {sorted(clashes)[0]} is one of your device IDs")
            self._check_signed_by_master(user_id, given, stored.get(MASTER))
            stored_master = stored.get(MASTER)
            if stored_master is not None and self._repeats_stored(given, stored):
                return  # the request repeats what is stored: nothing to do, no UIA
            if stored_master is not None and not authenticated:
                # UIA is needed unless there is no master key yet or nothing is new (above).
                await self.uia.authenticate(
                    UiaRequest("POST", "keys/device_signing/upload", user_id), auth, UIA_FLOWS
                )
                authenticated = True
            keys = [k.to_store(user_id) for k in given.values()]
            expected = stored_master.key_json if stored_master else None
            if await self.store.set_cross_signing_keys(user_id, keys, expected):
                return
        raise MatrixError(409, "M_UNKNOWN", "Cross-signing keys changed concurrently; try again")

    @staticmethod
    def _parse_key(obj: dict[str, Any], user_id: str, usage: str) -> ParsedKey:
        label = f"{usage}_key" if usage != MASTER else "master_key"
        # Synapse answers a malformed key with 400 M_INVALID_PARAM (and a wrong user_id or
        # usage with M_UNKNOWN); we use M_INVALID_PARAM for all of them.
        if obj.get("user_id") != user_id:
            raise invalid_param(f"{label}.user_id must be your user ID")
        usages = obj.get("usage")
        if not isinstance(usages, list) or usage not in usages:
            raise invalid_param(f"{label}.usage must contain {usage!r}")
        if any(not isinstance(u, str) for u in usages):
            raise invalid_param(f"{label}.usage must be a list of strings")
        keys = obj.get("keys")
        if not isinstance(keys, dict) or len(keys) != 1:
            raise invalid_param(f"{label}.keys must hold exactly one key")
        ((key_id, public_key),) = keys.items()
        if not isinstance(public_key, str) or key_id.partition(":")[2] != public_key:
            raise invalid_param(f"{label}.keys must be {{'ed25519:<public key>': <public key>}}")
        try:
            verify_key = verify_key_for(key_id, public_key)
        except ValueError as e:
            raise invalid_param(f"{label}: {e}") from None
        if "signatures" in obj and not isinstance(obj["signatures"], dict):
            raise invalid_param(f"{label}.signatures must be an object")
        # Signed JSON: canonical numbers only (integers in range), bounded nesting.
        check_json(obj, label, canonical=True)
        return ParsedKey(usage, public_key, verify_key, obj)

    @staticmethod
    def _check_signed_by_master(
        user_id: str, given: dict[str, ParsedKey], stored_master: CrossSigningKey | None
    ) -> None:
        subkeys = [given[u] for u in (SELF_SIGNING, USER_SIGNING) if u in given]
        if not subkeys:
            return
        if MASTER in given:
            master_key = given[MASTER].verify_key
        elif stored_master is not None:
            master_key = verify_key_for(f"{ED25519}:{stored_master.key_id}", stored_master.key_id)
        else:
            raise missing_param("No master key available to check the signatures with")
        for key in subkeys:
            if not signature_valid(key.obj, user_id, master_key):
                raise invalid_signature(f"Invalid signature on the {key.usage} key")

    @staticmethod
    def _repeats_stored(given: dict[str, ParsedKey], stored: dict[str, CrossSigningKey]) -> bool:
        """The spec's second case without UIA: the master key in the request is the stored
        one, and so is every other key in it."""
        if MASTER not in given:
            return False
        return all(
            usage in stored and decode_json(stored[usage].key_json) == key.obj
            for usage, key in given.items()
        )

    # -- /keys/signatures/upload --------------------------------------------------------------

    async def upload_signatures(
        self, user_id: str, request: Mapping[str, Mapping[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        for target in request:
            if split_user_id(target) is None:
                raise invalid_param(f"Invalid user ID: {target!r}")
        check_json(request, "Signed objects", canonical=True)
        own = request.get(user_id, {})
        others = {u: objs for u, objs in request.items() if u != user_id}
        # Devices named as targets, and as signers (ed25519:<device>) of the master key.
        device_ids = set(own)
        for obj in own.values():
            sigs = obj.get("signatures")
            by_user = sigs.get(user_id) if isinstance(sigs, dict) else None
            if isinstance(by_user, dict):
                device_ids.update(k.partition(":")[2] for k in by_user)
        ctx = await self.store.get_signing_context(user_id, device_ids, list(others))

        good: list[Signature] = []
        failures: dict[str, dict[str, Any]] = {}
        for key_id, obj in own.items():
            try:
                good.extend(self._own_signatures(user_id, key_id, obj, ctx))
            except SignatureFailure as f:
                failures.setdefault(user_id, {})[key_id] = f.to_json()
        for target, objs in others.items():
            for key_id, obj in objs.items():
                try:
                    good.append(self._other_signature(user_id, target, key_id, obj, ctx))
                except SignatureFailure as f:
                    failures.setdefault(target, {})[key_id] = f.to_json()
        if good:
            # Signatures on one's own keys change what everybody sees of the user; signatures
            # by the user-signing key are visible to the signer only.
            changed = [user_id] if any(s.target_user_id == user_id for s in good) else []
            await self.store.store_signatures(good, changed)
        return {"failures": failures}

    def _own_signatures(
        self, user_id: str, key_id: str, obj: dict[str, Any], ctx: SigningContext
    ) -> list[Signature]:
        signatures = obj.get("signatures")
        by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
        if not isinstance(by_user, dict) or not by_user:
            raise _bad_signature("No signature by you on this key")
        master = ctx.own_keys.get(MASTER)
        if master is not None and key_id == master.key_id:
            # Your master key, signed by your devices.
            if strip(obj) != strip(decode_json(master.key_json)):
                raise _MISMATCH
            out = []
            for signing_key_id, signature in by_user.items():
                if signing_key_id == f"{ED25519}:{master.key_id}":
                    continue  # the master key's own signature, if any
                device_json = ctx.own_devices.get(signing_key_id.partition(":")[2])
                public = (decode_json(device_json).get("keys") or {}) if device_json else {}
                if not isinstance(public.get(signing_key_id), str) or not isinstance(
                    signature, str
                ):
                    raise _bad_signature(f"{signing_key_id} is not one of your device keys")
                try:
                    verify_key = verify_key_for(signing_key_id, public[signing_key_id])
                except ValueError:
                    raise _bad_signature(f"{signing_key_id} is not an ed25519 key") from None
                if not signature_valid(obj, user_id, verify_key):
                    raise _bad_signature()
                out.append(Signature(user_id, key_id, user_id, signing_key_id, signature))
            if not out:
                raise _bad_signature("No device signature on the master key")
            return out
        # One of your devices, signed by your self-signing key.
        device_json = ctx.own_devices.get(key_id)
        if device_json is None:
            raise _not_found("Unknown device")
        ssk = ctx.own_keys.get(SELF_SIGNING)
        if ssk is None:
            raise _not_found("You have no self-signing key")
        signing_key_id = f"{ED25519}:{ssk.key_id}"
        signature = by_user.get(signing_key_id)
        if not isinstance(signature, str):
            raise _bad_signature("No signature by your self-signing key")
        if strip(obj) != strip(decode_json(device_json)):
            raise _MISMATCH
        verify_key = verify_key_for(signing_key_id, ssk.key_id)
        if not signature_valid(obj, user_id, verify_key):
            raise _bad_signature()
        return [Signature(user_id, key_id, user_id, signing_key_id, signature)]

    def _other_signature(
        self, user_id: str, target: str, key_id: str, obj: dict[str, Any], ctx: SigningContext
    ) -> Signature:
        """Another user's master key, signed by your user-signing key."""
        master = ctx.master_keys.get(target)
        if master is None:
            # (Users on other servers too, until federation can fetch their keys.)
            raise _not_found("No master key known for this user")
        if key_id != master.key_id:
            # Synapse: M_NOT_FOUND "Unknown device": only the master key can be signed.
            raise _not_found("Not this user's master key")
        usk = ctx.own_keys.get(USER_SIGNING)
        if usk is None:
            raise _not_found("You have no user-signing key")
        signing_key_id = f"{ED25519}:{usk.key_id}"
        signatures = obj.get("signatures")
        by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
        signature = by_user.get(signing_key_id) if isinstance(by_user, dict) else None
        if not isinstance(signature, str):
            raise _bad_signature("No signature by your user-signing key")
        if strip(obj) != strip(decode_json(master.key_json)):
            raise _MISMATCH
        verify_key = verify_key_for(signing_key_id, usk.key_id)
        if not signature_valid(obj, user_id, verify_key):
            raise _bad_signature()
        return Signature(target, key_id, user_id, signing_key_id, signature)
