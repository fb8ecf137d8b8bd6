"""`mxkeys.json_checks`: which request models may skip the walk, and what the walk refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from mxkeys.api.http import decode_json
from mxkeys.api.keys import ClaimBody, QueryBody, UploadBody
from mxkeys.errors import MatrixError
from mxkeys.json_checks import (
    check_json,
    check_request,
    decode_checked,
    fields_to_walk,
    typed_safely,
)

SafeInt = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


class Strings(msgspec.Struct):
    a: dict[str, list[str]]
    b: bool | None = None
    raw: msgspec.Raw | None = None  # undecoded: its handler checks it
    n: SafeInt = 0
    kind: Literal["x", "y"] = "x"


class Unbounded(msgspec.Struct):
    n: int


class TooWide(msgspec.Struct):
    n: Annotated[int, msgspec.Meta(ge=0, le=2**60)]


class Floating(msgspec.Struct):
    x: float


class Anything(msgspec.Struct):
    x: dict[str, Any]


class Tree(msgspec.Struct):
    children: list[Tree]


@pytest.mark.parametrize(
    ("model", "safe"),
    [
        (Strings, True),
        (ClaimBody, True),
        (QueryBody, True),
        (Unbounded, False),
        (TooWide, False),
        (Floating, False),
        (Anything, False),
        (UploadBody, False),  # device_keys is free-form JSON
        (Tree, False),  # recursive: nesting not bounded by the type
    ],
)
def test_typed_safely(model: type, safe: bool) -> None:
    assert typed_safely(model) is safe


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ({"a": 2**53}, False),
        ({"a": -(2**53)}, False),
        ({"a": [1.5]}, True),
        ({"a": float("inf")}, False),
        ({"deep": msgspec.json.decode(b"[" * 101 + b"]" * 101)}, False),
    ],
)
def test_check_json_refuses(value: Any, canonical: bool) -> None:
    with pytest.raises(MatrixError) as e:
        check_json(value, canonical=canonical)
    assert e.value.errcode == "M_BAD_JSON"


def test_check_json_accepts_edges() -> None:
    check_json({"a": [2**53 - 1, -(2**53) + 1, 1.5, None, True, "s"]})
    check_json({"a": 1}, canonical=True)


def test_decode_checked() -> None:
    assert decode_checked(b'{"a": 1}', "x") == {"a": 1}
    for bad in (b'{"a": 1e999}', b"[" * 10_000, b'{"a": 1.0}'):
        with pytest.raises(MatrixError):
            decode_checked(bad, "x", canonical=True)


def test_only_unsafe_fields_are_walked() -> None:
    """A Struct body is walked only where its type does not already rule out what the walk
    looks for: UploadBody's free-form device_keys, not its maps of undecoded keys."""
    assert fields_to_walk(UploadBody) == ("device_keys",)
    assert fields_to_walk(Strings) == ()
    assert fields_to_walk(dict[str, Any]) is None  # not a Struct: walked whole
    many = {f"signed_curve25519:k{i}": {"key": "k", "signatures": {}} for i in range(50)}
    fine = msgspec.json.encode({"device_keys": {"a": [1]}, "one_time_keys": many})
    assert decode_json(fine, UploadBody).device_keys == {"a": [1]}
    # The walk still finds what is wrong in the fields that need it, at the right depth:
    # device_keys sits one level below the body.
    for bad in (
        {"device_keys": {"n": 2**53}},
        {"device_keys": {"n": [1.5, float("nan")]}},
        {"device_keys": {"x": msgspec.json.decode(b"[" * 99 + b"]" * 99)}},
    ):
        with pytest.raises(MatrixError) as e:
            check_request(msgspec.convert(bad, UploadBody), UploadBody)
        assert e.value.errcode == "M_BAD_JSON"
    # The body, device_keys and 98 lists: 100 levels, the most allowed.
    nested = msgspec.json.decode(b"[" * 98 + b"]" * 98)
    check_request(UploadBody(device_keys={"x": nested}), UploadBody)
    with pytest.raises(MatrixError):
        check_request(UploadBody(device_keys={"x": [nested]}), UploadBody)
