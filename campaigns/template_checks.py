"""Whether a message template could be sent: its kind, text and card, the placeholders in every text
of it, and its size once compiled. The admin's forms, the API and an edit of a sent message all ask
``validate_template``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from .card_actions import ACKNOWLEDGE, ACKNOWLEDGE_PART, ACTION_KEY, ANSWER, POLL_INPUT, POLL_PART, REFRESH
from .cards import CARD_VERSION, card_problems
from .rendering import MAX_ACTIVITY_BYTES, compile_message, placeholder_problem


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


_CRIERS_OWN = (
    "is Crier's own: ask for an acknowledgement or a poll in the campaign, and Crier adds its buttons to the card"
)


def _crier_parts_problems(card: dict[str, Any]) -> list[str]:
    """What a card written by hand may not hold: Crier's own parts (``campaigns.card_actions``). A button of the
    template's own with Crier's verb or data, or a refresh of its own, would answer for another message."""
    problems = []
    if "refresh" in card:
        problems.append("refresh: Crier sets a card's refresh itself, to show each person what they did; leave it out.")
    stack: list[tuple[str, Any]] = [("", card)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            verb = value.get("verb")
            if isinstance(verb, str) and verb.lower().startswith("crier."):
                problems.append(f"{where}.verb: {verb!r} {_CRIERS_OWN}.")
            if value.get(ACTION_KEY) in (ACKNOWLEDGE, ANSWER, REFRESH):  # in data, a messageBack's value, anywhere
                problems.append(f"{where}: {ACTION_KEY} {value[ACTION_KEY]!r} {_CRIERS_OWN}.")
            if value.get("id") in (ACKNOWLEDGE_PART, POLL_PART, POLL_INPUT):
                problems.append(f"{where}.id: {value['id']!r} {_CRIERS_OWN}.")
            stack.extend((f"{where}.{key}" if where else key, item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{n}]", item) for n, item in enumerate(value))
    return problems


def validate_template(*, kind: str, text: str, card: Any) -> None:
    """Raises ValidationError, keyed by field, for a template that could not be sent. Problems inside
    a card are listed together, each naming its place in the card (``body[2].url: ...``)."""
    if kind == "markdown":
        if not text.strip():
            raise ValidationError({"text": "A markdown message needs text."})
        if card is not None:  # also false, 0, "" or []: the API stores what it is given
            raise ValidationError({"card": "A markdown message has no card (send null); choose the Adaptive Card kind."})
    elif kind == "adaptive_card":
        if not isinstance(card, dict):
            raise ValidationError({"card": "An Adaptive Card is a JSON object."})
        if card.get("type") != "AdaptiveCard":
            raise ValidationError({"card": 'An Adaptive Card needs "type": "AdaptiveCard".'})
        if not isinstance(card.get("body", []), list) or not card.get("body"):
            raise ValidationError({"card": 'An Adaptive Card needs a non-empty "body" list.'})
        if not isinstance(card.get("version", ""), str) or not card.get("version"):
            raise ValidationError({"card": f'An Adaptive Card needs a "version", such as "{CARD_VERSION}".'})
        problems = card_problems(card) + _card_placeholder_problems(card) + _crier_parts_problems(card)
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
