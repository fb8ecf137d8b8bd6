"""`mxkeys.json_checks`: which request models may skip the walk, and what the walk refuses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from mxkeys.api.keys import ClaimBody, QueryBody, UploadBody
from mxkeys.errors import MatrixError
from mxkeys.json_checks import check_json, decode_checked, typed_safely

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
