"""Request bodies read as strict JSON: the same rules in the predictor and the feedback API.

Python's ``json`` (and orjson) keep the last of a repeated key silently, take ``NaN`` and
``Infinity`` (which RFC 8259 does not), and either recurse until they fail or stop at their own
depth; a body read here is refused instead, with a reason a client can act on, when it is not
UTF-8, repeats a key in one object, carries a non-finite number, nests deeper than
:data:`~docloop.limits.MAX_JSON_DEPTH` levels, or is not JSON at all.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from docloop.limits import MAX_JSON_DEPTH

Flaw = Literal["utf8", "duplicate_key", "constant", "depth", "syntax"]


class StrictJsonError(ValueError):
    """Why a body is not strict JSON: ``what`` is wrong, and how to ``fix`` it.

    Attributes:
        flaw: which rule it breaks (``syntax``: not JSON at all).
    """

    def __init__(self, flaw: Flaw, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.flaw: Flaw = flaw
        self.what = what
        self.fix = fix


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Constant(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def depth(value: Any) -> int:
    """Levels of objects and arrays in a decoded JSON value (a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def loads(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode ``body`` as strict JSON.

    Raises:
        StrictJsonError: the body breaks one of the module's rules.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJsonError(
                "utf8",
                f"not valid UTF-8 (byte {exc.start}: {body[exc.start : exc.start + 1]!r})",
                "send the JSON encoded as UTF-8",
            ) from exc
    else:
        text = body
    too_deep = StrictJsonError(
        "depth",
        f"nested deeper than {max_depth} levels",
        "send the documented shape (objects and arrays nest only a few levels)",
    )
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise StrictJsonError(
            "duplicate_key",
            f"the key {exc.key!r} appears more than once in one object",
            "send each key once (a repeated key is ambiguous)",
        ) from exc
    except _Constant as exc:
        raise StrictJsonError(
            "constant",
            f"{exc.name} is not a JSON number",
            "send finite numbers only",
        ) from exc
    except RecursionError as exc:
        raise too_deep from exc
    except ValueError as exc:
        raise StrictJsonError("syntax", f"not valid JSON ({exc})", "send valid JSON") from exc
    if depth(value) > max_depth:
        raise too_deep
    return value
