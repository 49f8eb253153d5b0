"""Message templates: placeholders such as ``{{first_name}}`` or ``{{first_name|colleague}}`` (with a
fallback) filled in per recipient.

A template is compiled once per campaign into the JSON text of its activity; per recipient only
the placeholders are replaced, each value JSON-escaped, so no name can break the card's JSON or
inject card elements.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from bots.schema import message_activity

PLACEHOLDER_FIELDS = (
    "first_name",
    "last_name",
    "display_name",
    "email",
    "upn",
    "department",
    "job_title",
    "location",
    "country",
    "locale",
    "time_zone",
    "start_date",
    "external_id",
)
# {{ field }} or {{ field|fallback }}; the fallback may not contain braces, quotes or backslashes.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*(?:\|([^{}\"\\]*))?\}\}")
_ATTRIBUTE = re.compile(r"^attributes\.[A-Za-z0-9_\-]{1,64}$")
# Teams refuses messages over about 100 KB; keep a margin for the per-recipient values.
MAX_ACTIVITY_BYTES = 80 * 1024


def placeholder_problem(text: str) -> str | None:
    """What is wrong with the placeholders in this text, if anything. They are looked for as the
    text stands in the activity's JSON, where they are found when sending: a fallback holding a
    character JSON escapes (a tab, a quote) would not be found there, so it is refused here."""
    text = json.dumps(text, ensure_ascii=False)[1:-1]
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in PLACEHOLDER_FIELDS and not _ATTRIBUTE.match(name):
            return f"Unknown placeholder {{{{{name}}}}}; use {', '.join(PLACEHOLDER_FIELDS)} or attributes.<key>."
    if "{{" in PLACEHOLDER.sub("", text):
        return "A placeholder is not closed or holds characters it may not: use {{field}}."
    return None


def _check_placeholders(text: str, where: str) -> None:
    if problem := placeholder_problem(text):
        raise ValidationError({where: problem})


def _card_placeholder_problems(card: Any) -> list[str]:
    """Placeholder problems in every text of a card, each naming its place (``body[0].text``)."""
    problems = []
    stack: list[tuple[str, Any]] = [("", card)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if problem := placeholder_problem(value):
                problems.append(f"{where}: {problem}")
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                place = f"{where}.{key}" if where else key
                if problem := placeholder_problem(key):
                    problems.append(f"{place} (the name): {problem}")
                stack.append((place, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{n}]", item) for n, item in reversed(list(enumerate(value))))
    return problems


def validate_template(*, kind: str, text: str, card: Any) -> None:
    """Raises ValidationError, keyed by field, for a template that could not be sent. Problems inside
    a card are listed together, each naming its place in the card (``body[2].url: ...``)."""
    from .cards import CARD_VERSION, card_problems

    if kind == "markdown":
        if not text.strip():
            raise ValidationError({"text": "A markdown message needs text."})
        if card:
            raise ValidationError({"card": "A markdown message has no card; choose the Adaptive Card kind."})
    elif kind == "adaptive_card":
        if not isinstance(card, dict):
            raise ValidationError({"card": "An Adaptive Card is a JSON object."})
        if card.get("type") != "AdaptiveCard":
            raise ValidationError({"card": 'An Adaptive Card needs "type": "AdaptiveCard".'})
        if not isinstance(card.get("body", []), list) or not card.get("body"):
            raise ValidationError({"card": 'An Adaptive Card needs a non-empty "body" list.'})
        if not isinstance(card.get("version", ""), str) or not card.get("version"):
            raise ValidationError({"card": f'An Adaptive Card needs a "version", such as "{CARD_VERSION}".'})
        problems = card_problems(card) + _card_placeholder_problems(card)
        if problems:
            raise ValidationError({"card": problems})
    else:
        raise ValidationError({"kind": f"Unknown kind {kind!r}."})
    _check_placeholders(text, "text")
    size = len(compile_message(kind=kind, text=text, card=card).activity_json.encode())
    if size > MAX_ACTIVITY_BYTES:
        raise ValidationError({
            "card" if card else "text":
                f"The message is {size} bytes; Teams' limit is about 100 KB, keep it under {MAX_ACTIVITY_BYTES}."
        })


def recipient_value(recipient: Any, name: str) -> str:
    if name.startswith("attributes."):
        value = (recipient.attributes or {}).get(name.split(".", 1)[1])
    else:
        value = getattr(recipient, name, None)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class CompiledMessage:
    activity_json: str  # the activity as JSON text, placeholders still in it

    def render(self, recipient: Any) -> bytes:
        def fill(match: re.Match[str]) -> str:
            value = recipient_value(recipient, match.group(1)) or (match.group(2) or "").strip()
            return json.dumps(value, ensure_ascii=False)[1:-1]

        return PLACEHOLDER.sub(fill, self.activity_json).encode("utf-8")


def compile_message(*, kind: str, text: str, card: Any) -> CompiledMessage:
    if kind == "adaptive_card":
        activity = message_activity(card=card, summary=text or None)
    else:
        activity = message_activity(text=text)
    return CompiledMessage(activity_json=json.dumps(activity, ensure_ascii=False, separators=(",", ":")))
