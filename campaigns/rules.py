"""Audience rules: a list of conditions on recipient fields, all of which must hold.

``{"field": "department", "op": "eq", "value": "Sales"}``; fields are the recipient's own
(see ``RULE_FIELDS``) or ``attributes.<key>`` for the free attributes the HR system sends.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

RULE_FIELDS = ("department", "job_title", "location", "country", "locale", "time_zone", "start_date")
OPERATORS = ("eq", "neq", "in", "not_in", "gte", "lte")
_ATTRIBUTE_KEY = re.compile(r"^attributes\.[A-Za-z0-9_\-]{1,64}$")


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """Returns the rules if valid; raises ValidationError naming the faulty rule otherwise."""
    if not isinstance(rules, list):
        raise ValidationError("Rules must be a list of {field, op, value} objects.")
    for index, rule in enumerate(rules):
        where = f"Rule {index + 1}"
        if not isinstance(rule, dict) or set(rule) != {"field", "op", "value"}:
            raise ValidationError(f"{where}: must have exactly the keys field, op and value.")
        field, op, value = rule["field"], rule["op"], rule["value"]
        if field not in RULE_FIELDS and not (isinstance(field, str) and _ATTRIBUTE_KEY.match(field)):
            allowed = ", ".join(RULE_FIELDS)
            raise ValidationError(f"{where}: unknown field {field!r}; use one of {allowed} or attributes.<key>.")
        if op not in OPERATORS:
            raise ValidationError(f"{where}: unknown op {op!r}; use one of {', '.join(OPERATORS)}.")
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
                raise ValidationError(f"{where}: {op} needs a non-empty list of strings.")
        elif not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValidationError(f"{where}: {op} needs a single string value.")
        if field == "start_date":
            for item in value if isinstance(value, list) else [value]:
                try:
                    datetime.date.fromisoformat(str(item))
                except ValueError as exc:
                    raise ValidationError(f"{where}: start_date values are dates (YYYY-MM-DD).") from exc
        elif op in ("gte", "lte") and not field.startswith("attributes."):
            raise ValidationError(f"{where}: {op} applies to start_date and attributes only.")
    return rules


def rules_to_q(rules: list[dict[str, Any]]) -> Q:
    query = Q()
    for rule in rules:
        field, op, value = rule["field"], rule["op"], rule["value"]
        lookup = field.replace(".", "__")
        if field == "country":
            value = [v.upper() for v in value] if isinstance(value, list) else str(value).upper()
        if op == "eq":
            query &= Q(**{lookup: value})
        elif op == "neq":
            query &= ~Q(**{lookup: value})
        elif op == "in":
            query &= Q(**{f"{lookup}__in": value})
        elif op == "not_in":
            query &= ~Q(**{f"{lookup}__in": value})
        elif op == "gte":
            query &= Q(**{f"{lookup}__gte": value})
        elif op == "lte":
            query &= Q(**{f"{lookup}__lte": value})
    return query
