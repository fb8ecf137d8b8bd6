"""Matrix identifiers: grammar checks and generation (spec appendix "Identifier Grammar")."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time

# Localparts that may be registered now.
LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
# Localparts of existing users anywhere (historical grammar: printable ASCII but ':').
HISTORICAL_LOCALPART_RE = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# server_name = hostname / IPv4 / [IPv6], with an optional port.
SERVER_NAME_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?")
# A whole user ID: the two above, in one pass. (The localpart cannot hold ":", so the first
# one ends it; everything matched is ASCII, so characters count as bytes.)
USER_ID_RE = re.compile(f"@({HISTORICAL_LOCALPART_RE.pattern}):({SERVER_NAME_RE.pattern})")
MAX_USER_ID_BYTES = 255
MAX_DEVICE_ID_LENGTH = 255


def now_ms() -> int:
    return int(time.time() * 1000)


def is_valid_server_name(name: str) -> bool:
    return SERVER_NAME_RE.fullmatch(name) is not None


def split_user_id(user_id: str) -> tuple[str, str] | None:
    """`(localpart, server_name)` of a syntactically valid user ID, else None."""
    if len(user_id) > MAX_USER_ID_BYTES:
        return None
    match = USER_ID_RE.fullmatch(user_id)
    return (match[1], match[2]) if match is not None else None


def make_user_id(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def random_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


def random_token(prefix: str = "mxk_") -> str:
    return prefix + secrets.token_urlsafe(32)


def random_session_id() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
