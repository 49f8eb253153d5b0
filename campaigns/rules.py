"""Audience rules: a list of conditions on recipient fields, all of which must hold.

``{"field": "department", "op": "eq", "value": "Sales"}``; fields are the recipient's own
(see ``RULE_FIELDS``) or ``attributes.<key>`` for the free attributes the HR system sends.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import CharField, Func, JSONField, Q, Value
from django.db.models.fields.json import KeyTransform

RULE_FIELDS = ("department", "job_title", "location", "country", "locale", "time_zone", "start_date")
OPERATORS = ("eq", "neq", "in", "not_in", "gte", "lte")
ATTRIBUTE_PREFIX = "attributes."
ATTRIBUTE_KEY_PATTERN = r"[A-Za-z0-9_\-]{1,64}"  # also what the rule editor checks a typed key against
_ATTRIBUTE_KEY = re.compile(rf"attributes\.{ATTRIBUTE_KEY_PATTERN}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """Returns the rules if valid; raises ValidationError naming the faulty rule otherwise."""
    if not isinstance(rules, list):
        raise ValidationError("Rules must be a list of {field, op, value} objects.")
    for index, rule in enumerate(rules):
        where = f"Rule {index + 1}"
        if not isinstance(rule, dict) or set(rule) != {"field", "op", "value"}:
            raise ValidationError(f"{where}: must have exactly the keys field, op and value.")
        field, op, value = rule["field"], rule["op"], rule["value"]
        if field not in RULE_FIELDS and not (isinstance(field, str) and _ATTRIBUTE_KEY.fullmatch(field)):
            allowed = ", ".join(RULE_FIELDS)
            raise ValidationError(f"{where}: unknown field {field!r}; use one of {allowed} or attributes.<key>.")
        if op not in OPERATORS:
            raise ValidationError(f"{where}: unknown op {op!r}; use one of {', '.join(OPERATORS)}.")
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
                raise ValidationError(f"{where}: {op} needs a non-empty list of strings.")
        elif not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValidationError(f"{where}: {op} needs a single string value.")
        if any("\x00" in str(item) for item in (value if isinstance(value, list) else [value])):
            raise ValidationError(f"{where}: values cannot contain NUL characters.")
        if field == "start_date":
            for item in value if isinstance(value, list) else [value]:
                try:
                    if not (isinstance(item, str) and _DATE.fullmatch(item)):
                        raise ValueError(item)
                    datetime.date.fromisoformat(item)
                except ValueError as exc:
                    raise ValidationError(f"{where}: start_date values are dates (YYYY-MM-DD).") from exc
        elif op in ("gte", "lte") and not field.startswith("attributes."):
            raise ValidationError(f"{where}: {op} applies to start_date and attributes only.")
    return rules


def rules_to_q(rules: list[dict[str, Any]]) -> Q:
    query = Q()
    for rule in rules:
        field, op, value = rule["field"], rule["op"], rule["value"]
        if field.startswith(ATTRIBUTE_PREFIX):
            query &= _attribute_q(field.removeprefix(ATTRIBUTE_PREFIX), op, value)
            continue
        if field == "country":
            value = [str(v).upper() for v in value] if isinstance(value, list) else str(value).upper()
        if op == "eq":
            query &= Q(**{field: value})
        elif op == "neq":
            query &= ~Q(**{field: value})
        elif op == "in":
            query &= Q(**{f"{field}__in": value})
        elif op == "not_in":
            query &= ~Q(**{f"{field}__in": value})
        elif op == "gte":
            query &= Q(**{f"{field}__gte": value})
        elif op == "lte":
            query &= Q(**{f"{field}__lte": value})
    return query


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _spelled(value: str | int) -> str | int | float | bool | None:
    """The number or boolean a text spells ("7", "2.5", "true"), if it spells one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Longer than any number an HR system keeps: Python's int() refuses thousands of digits, and a
    # float that large is infinite, which PostgreSQL's JSON refuses.
    if _NUMBER.fullmatch(text) and len(text) <= 30:
        number = float(text) if "." in text else int(text)
        return number if math.isfinite(number) else None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None


def _attribute_q(key: str, op: str, value: Any) -> Q:
    """A condition on a free attribute (the key is never read as a lookup name). Attributes come as
    JSON strings, numbers and booleans, while a rule's value is often typed as text: text that
    spells a number or a boolean matches it too ("7" matches 7). "is not" and "is not one of" also
    select people without the attribute, as they do for an empty recipient field; "at least" and
    "at most" compare numbers with numbers and text with text."""
    attribute = KeyTransform(key, "attributes")
    if op in ("eq", "neq", "in", "not_in"):
        values = value if isinstance(value, list) else [value]
        spellings = [*values, *(s for s in map(_spelled, values) if s is not None)]
        matches = Q(attribute.get_lookup("in")(attribute, spellings))
        if op in ("eq", "in"):
            return matches
        return ~matches | Q(attribute.get_lookup("isnull")(attribute, True))
    bound = value if isinstance(value, int) else _spelled(value)
    if bound is None or isinstance(bound, bool):
        bound, kind = value, "string"
    else:
        kind = "number"
    compared = attribute.get_lookup(op)(attribute, Value(bound, output_field=JSONField()))
    json_type = Func(attribute, function="jsonb_typeof", output_field=CharField())
    return Q(compared) & Q(json_type.get_lookup("exact")(json_type, kind))
