"""A person's free attributes, as the HR system sends them: a flat object of short values that rules
select on and placeholders (``{{attributes.<key>}}``) put into messages. Bounded, so that one row
cannot carry a megabyte into every message, rule, export and page that shows it.

The bounds are settings (``RECIPIENT_ATTRIBUTES_MAX_KEYS``, ``RECIPIENT_ATTRIBUTE_MAX_LENGTH``,
``RECIPIENT_ATTRIBUTES_MAX_CHARS``); a key is what a placeholder or a rule can name.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.conf import settings

from .rules import ATTRIBUTE_KEY_PATTERN

_KEY = re.compile(ATTRIBUTE_KEY_PATTERN)
WHOLE = None  # the place of a problem with the attributes as a whole


def text_problem(text: str) -> str | None:
    """PostgreSQL stores neither NUL nor a lone surrogate."""
    if "\x00" in text:
        return "Null characters are not allowed."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Surrogate characters are not allowed."
    return None


def _value_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "Must be a finite number."
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return "Must be a string, number, boolean or null (attributes are a flat object)."
    if problem := text_problem(value):
        return problem
    limit = settings.RECIPIENT_ATTRIBUTE_MAX_LENGTH
    if len(value) > limit:
        return f"{len(value)} characters; an attribute holds at most {limit}."
    return None


def attributes_problems(attributes: Any) -> dict[str | None, str]:
    """What is wrong with these attributes, keyed by place: ``WHOLE`` for the object as a whole, else
    the attribute's key. Empty when they may be stored."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        return {WHOLE: "Attributes are a JSON object, such as {\"site\": \"Paris\"}."}
    problems: dict[str | None, str] = {}
    most = settings.RECIPIENT_ATTRIBUTES_MAX_KEYS
    if len(attributes) > most:
        return {WHOLE: f"{len(attributes)} attributes; a person has at most {most}."}
    total = 0
    for key, value in attributes.items():
        if not _KEY.fullmatch(key):
            problems[key] = ("A key is 1 to 64 letters, digits, _ or - (what {{attributes.<key>}} and rules can "
                             "name).")
        elif problem := _value_problem(value):
            problems[key] = problem
        total += len(key) + (len(value) if isinstance(value, str) else 8)
    total_limit = settings.RECIPIENT_ATTRIBUTES_MAX_CHARS
    if not problems and total > total_limit:
        problems[WHOLE] = (f"{total} characters in all (keys and values); a person's attributes hold at most "
                           f"{total_limit}.")
    return problems


def attributes_problem_list(attributes: Any) -> list[str]:
    """The same problems as sentences, each naming its key (for a form field's errors)."""
    problems = attributes_problems(attributes)
    return [f"{key}: {problem}" if key is not None else problem for key, problem in problems.items()]
