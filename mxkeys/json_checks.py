"""What a JSON value from a client may hold, checked before anything is stored.

msgspec's decoding already refuses invalid UTF-8, lone surrogates, NaN/Infinity and numbers
that overflow a float (`1e999`). On top of that every request body must satisfy:

- nesting at most `MAX_DEPTH` levels deep (msgspec would otherwise go on until the Python
  recursion limit, and a value stored that deep could break later code that recurses);
- integers within canonical JSON's range `[-(2**53)+1, (2**53)-1]` (spec appendix "Canonical
  JSON"): larger ones cannot be signed, compared or read back by most clients;
- in objects that are signed (device keys, one-time and fallback keys, cross-signing keys),
  canonical JSON exactly: integers only, no floats at all.

The checks walk decoded values with an explicit stack, never recursion.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mxkeys.errors import bad_json

MAX_DEPTH = 100
MAX_SAFE_INT = 2**53 - 1
MIN_SAFE_INT = -(2**53) + 1

_decode = msgspec.json.Decoder().decode


def json_problem(value: Any, canonical: bool = False, depth: int = 0) -> str | None:
    """Why `value` (decoded JSON, possibly msgspec Structs at the top) is not acceptable, or
    None. `depth` is the nesting level `value` itself sits at."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None or kind is msgspec.Raw:
            continue
        if kind is int:
            if not MIN_SAFE_INT <= item <= MAX_SAFE_INT:
                return "integers must lie within [-(2**53)+1, (2**53)-1]"
            continue
        if kind is float:
            if canonical:
                return "numbers in signed JSON must be integers"
            if item != item or item in (float("inf"), float("-inf")):
                return "numbers must be finite"
            continue
        if level >= MAX_DEPTH:
            return f"JSON nested more than {MAX_DEPTH} levels deep"
        if kind is dict:
            stack.extend((v, level + 1) for v in item.values())
        elif kind is list or kind is tuple:
            stack.extend((v, level + 1) for v in item)
        elif isinstance(item, msgspec.Struct):
            stack.extend((getattr(item, f), level + 1) for f in item.__struct_fields__)
    return None


def check_json(value: Any, what: str = "Request body", canonical: bool = False) -> None:
    """Raise 400 M_BAD_JSON if `value` breaks the rules above."""
    problem = json_problem(value, canonical)
    if problem is not None:
        raise bad_json(f"{what}: {problem}")


def decode_checked(raw: bytes | str, what: str, canonical: bool = False) -> Any:
    """Decode JSON text (e.g. a `msgspec.Raw` kept as sent) and check it; 400 if either fails."""
    try:
        value = _decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise bad_json(f"{what}: invalid JSON or nested too deeply") from None
    check_json(value, what, canonical)
    return value


def only_string_members(text: str) -> bool:
    """A fast, conservative test that a JSON object's text holds only string members
    (`{"k":"v", ...}`): then it holds no numbers and no nesting, and needs no decoding to be
    checked. False means "decode and check it" (not that it is invalid).

    A colon outside strings separates a key from its value; the test holds when every colon
    has a `"` before it and a string after it (a `"`, after at most one space). A colon inside
    a string can only make the counts disagree, which errs on the safe side."""
    if text[:1] != "{" or "{" in text[1:] or "[" in text:
        return False
    return text.count(":") == text.count('":"') + text.count('": "')
