"""`mxkeys.ids`: user IDs split by the identifier grammar (spec appendix "Identifier
Grammar": historical localparts, server names with an optional port)."""

from __future__ import annotations

import pytest

from mxkeys.ids import split_user_id


@pytest.mark.parametrize(("user_id", "parts"), [
    ("@alice:example.org", ("alice", "example.org")),
    ("@alice:example.org:8448", ("alice", "example.org:8448")),
    ("@alice:[::1]:8448", ("alice", "[::1]:8448")),
    ("@alice:1.2.3.4", ("alice", "1.2.3.4")),
    ("@Old%User!:localhost", ("Old%User!", "localhost")),  # historical localparts
])
def test_valid_user_ids(user_id: str, parts: tuple[str, str]) -> None:
    assert split_user_id(user_id) == parts


@pytest.mark.parametrize("user_id", [
    "alice:example.org",  # no sigil
    "@alice",  # no server
    "@:example.org",  # empty localpart
    "@alice:",  # empty server name
    "@al ice:example.org",  # space in the localpart
    "@élise:example.org",  # not ASCII
    "@alice:exa mple.org",
    "@alice:bad_host",
    "@alice::8448",
    "@alice:example.org:port",
    "@alice:[zz]",
    "@" + "a" * 250 + ":example.org",  # over 255 bytes
])
def test_invalid_user_ids(user_id: str) -> None:
    assert split_user_id(user_id) is None


def test_at_most_255_bytes() -> None:
    user_id = "@" + "a" * 242 + ":example.org"
    assert len(user_id) == 255 and split_user_id(user_id) is not None
    assert split_user_id(user_id + "x") is None
