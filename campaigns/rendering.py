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


def _check_placeholders(text: str, where: str) -> None:
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in PLACEHOLDER_FIELDS and not _ATTRIBUTE.match(name):
            raise ValidationError(
                {where: f"Unknown placeholder {{{{{name}}}}}; use {', '.join(PLACEHOLDER_FIELDS)} or attributes.<key>."}
            )
    stripped = PLACEHOLDER.sub("", text)
    if "{{" in stripped:
        raise ValidationError({where: "A placeholder is not closed or holds characters it may not: use {{field}}."})


def validate_template(*, kind: str, text: str, card: Any) -> None:
    """Raises ValidationError, keyed by field, for a template that could not be sent."""
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
            raise ValidationError({"card": 'An Adaptive Card needs a "version", such as "1.4".'})
        _check_placeholders(json.dumps(card), "card")
    else:
        raise ValidationError({"kind": f"Unknown kind {kind!r}."})
    _check_placeholders(text, "text")
    size = len(compile_message(kind=kind, text=text, card=card).activity_json.encode())
    if size > MAX_ACTIVITY_BYTES:
        raise ValidationError({"card" if card else "text": f"The message is {size} bytes; Teams' limit is about 100 KB, keep it under {MAX_ACTIVITY_BYTES}."})


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
