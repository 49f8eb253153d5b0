"""Bounded JSON reading, for every JSON body Crier takes (the API's and the bot's messaging endpoint's).

Python's ``json`` recurses once per level of nesting: about 10 KB of ``[[[[…]]]]`` passes the
interpreter's recursion limit and raises ``RecursionError``, which nothing expects (a 500). Bodies
nested deeper than ``MAX_JSON_DEPTH`` are refused as malformed; Adaptive Cards, the deepest JSON Crier
takes, stay far below it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.utils import json  # the standard library's, refusing NaN and Infinity as JSON does

MAX_JSON_DEPTH = 64
TOO_DEEP = f"the body is nested more than {MAX_JSON_DEPTH} levels deep"


class JSONTooDeep(ValueError):
    """A JSON document nested past ``MAX_JSON_DEPTH`` (or past what the parser itself can follow)."""


def json_depth_check(data: Any) -> None:
    """Raises JSONTooDeep if ``data`` nests lists and objects more than MAX_JSON_DEPTH levels deep
    (level by level, without recursion, so the check cannot overflow either)."""
    level, depth = [data], 0
    while level:
        containers = [value for value in level if isinstance(value, (dict, list))]
        if not containers:
            return
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise JSONTooDeep(TOO_DEEP)
        level = [item for value in containers for item in (value.values() if isinstance(value, dict) else value)]


def json_loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` that raises ValueError (JSONTooDeep) for too deep a document, never RecursionError."""
    try:
        data = json.loads(text)
    except RecursionError as exc:
        raise JSONTooDeep(TOO_DEEP) from exc
    json_depth_check(data)
    return data
