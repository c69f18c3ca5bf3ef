"""The one JSON parser for what clients send (request bodies, WebSocket frames).

Stricter than ``json.loads`` where leniency hurts: a body nested deeper than any orc schema
needs is refused before it can exhaust the stack, a key given twice is refused (parsers differ
on which copy wins, so a check and a use could read different values), and ``NaN``/``Infinity``
are refused (not JSON, and no column holds them).
"""

from __future__ import annotations

import json

from orc.errors import ApiError

# The deepest orc schema is a usage batch: {"events": [{...}]}; 32 leaves room and no risk.
MAX_DEPTH = 32


class _Refused(ValueError):
    """Raised from the parser's hooks; its message is the client's."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"the key {key[:64]!r} appears twice in one object")
        result[key] = value
    return result


def _not_a_number(text: str) -> object:
    raise _Refused(f"{text} is not a JSON number")


def _too_deep(data: object) -> bool:
    """Whether ``data`` nests lists/objects more than MAX_DEPTH levels (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list):
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in value)
    return False


def _too_deep_error() -> ApiError:
    return ApiError(400, "invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels")


def parse_json(raw: bytes | str) -> object:
    """``raw`` as JSON, or ApiError 400 ``invalid_json`` saying what is wrong with it."""
    try:
        data = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_not_a_number)
    except _Refused as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    except RecursionError:
        # The C scanner gives up at the interpreter's recursion limit (about 1000 levels).
        raise _too_deep_error() from None
    except ValueError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if _too_deep(data):
        raise _too_deep_error()
    return data
