"""The server's ed25519 signing key, made on first start and kept in the database."""

from __future__ import annotations

from typing import Any

from signedjson.key import (
    decode_signing_key_base64,
    encode_signing_key_base64,
    generate_signing_key,
)

from mxkeys.ids import now_ms
from mxkeys.storage.server_keys import ServerKeyStore

KEY_VERSION = "a_mxk1"


def load_signing_key(store: ServerKeyStore) -> Any:
    fresh = generate_signing_key(KEY_VERSION)
    seed = store.get_or_create_sync(
        f"ed25519:{KEY_VERSION}", encode_signing_key_base64(fresh), now_ms()
    )
    return decode_signing_key_base64("ed25519", KEY_VERSION, seed)
