"""Real ed25519 keys and signed key objects for the key API tests."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey

from tests.helpers import Api, User


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def random_curve25519() -> str:
    return b64(os.urandom(32))


def public_key(key: SigningKey) -> str:
    return encode_verify_key_base64(get_verify_key(key))


@dataclass
class Device:
    """A user's device with its ed25519 key."""

    user: User
    key: SigningKey
    stored_keys: dict[str, Any] | None = None  # the device keys last uploaded

    @property
    def device_id(self) -> str:
        return self.user.device_id

    def device_keys(self, **extra: Any) -> dict[str, Any]:
        d = self.user.device_id
        obj = {
            "user_id": self.user.user_id,
            "device_id": d,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{d}": public_key(self.key), f"curve25519:{d}": random_curve25519()},
            **extra,
        }
        return sign_json(obj, self.user.user_id, self.key)

    def otk(self, fallback: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": random_curve25519()}
        if fallback:
            obj["fallback"] = True
        return sign_json(obj, self.user.user_id, self.key)

    def otks(self, count: int, prefix: str = "k") -> dict[str, Any]:
        return {f"signed_curve25519:{prefix}{i}": self.otk() for i in range(count)}


def new_device(user: User) -> Device:
    return Device(user, generate_signing_key(user.device_id))


def upload(api: Api, device: Device, expect: int = 200, **body: Any) -> dict[str, Any]:
    response = api.post("keys/upload", device.user, json=body)
    assert response.status_code == expect, response.text
    return response.json()


def setup_device(
    api: Api, user: User | None = None, otks: int = 0, fallback: bool = False
) -> Device:
    """A device of a new (or the given) user with device keys, `otks` one-time keys and
    optionally a fallback key uploaded."""
    device = new_device(user or api.register())
    device.stored_keys = device.device_keys()
    body: dict[str, Any] = {"device_keys": device.stored_keys}
    if otks:
        body["one_time_keys"] = device.otks(otks)
    if fallback:
        body["fallback_keys"] = {"signed_curve25519:fb": device.otk(fallback=True)}
    upload(api, device, **body)
    return device


def signing_key() -> SigningKey:
    """An ed25519 key named by its public key, as cross-signing keys are."""
    key = generate_signing_key("x")
    key.version = public_key(key)
    return key


@dataclass
class CrossSigning:
    """A user's master, self-signing and user-signing keys and their uploadable objects."""

    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    def obj(self, key: SigningKey, usage: str) -> dict[str, Any]:
        pub = public_key(key)
        obj = {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
        if usage != "master":
            sign_json(obj, self.user_id, self.master)
        return obj

    def body(self, master: bool = True, ssk: bool = True, usk: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if master:
            body["master_key"] = self.obj(self.master, "master")
        if ssk:
            body["self_signing_key"] = self.obj(self.self_signing, "self_signing")
        if usk:
            body["user_signing_key"] = self.obj(self.user_signing, "user_signing")
        return body


def new_cross_signing(user_id: str) -> CrossSigning:
    return CrossSigning(user_id, signing_key(), signing_key(), signing_key())
