"""Crier's own actions in the cards it sends: the button that acknowledges a message, and the card's ``refresh``.

A campaign that asks for an acknowledgement sends its card with, at the end of its body, a part of Crier's own
(``ACKNOWLEDGE_PART``): a Universal Actions button (``Action.Execute``, with an ``Action.Submit`` fallback for
Teams clients too old for it). Pressed, Teams sends Crier an invoke and shows the person the card Crier answers
with: the same card, the button replaced by the time they acknowledged (``card_acknowledged``). The card's
``refresh`` makes Teams ask for that view whenever it shows the card, on any of the person's devices. In a
one-to-one chat Teams refreshes for its one person without a list of user ids.

A markdown message has no card to carry a button: it is sent as a card holding its text (Adaptive Cards' markdown,
which lacks headings and tables).

The button's data names the campaign (its public id) and the version of the message it was on; whose it is, Teams
says (the invoke's sender), never the data: ``delivery.acknowledgements`` checks it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .cards import CARD_VERSION

ACTION_KEY = "crier_action"  # where an Action.Submit's data says what it is (bots.services routes on it)
ACKNOWLEDGE = "acknowledge"
REFRESH = "refresh"
VERB_ACKNOWLEDGE = "crier.acknowledge"  # Action.Execute verbs
VERB_REFRESH = "crier.refresh"
ACKNOWLEDGE_PART = "crier-acknowledge"  # the id of the part of the card the acknowledgement lives in
LEAST_VERSION = (1, 4)  # Action.Execute and refresh need Adaptive Cards 1.4; Teams documents 1.5

LABEL = {"asked": "Acknowledge", "policy": "I have read and understood this"}
AGAIN = "This was changed since you acknowledged it: please read it again, and acknowledge it once more."


@dataclass(frozen=True)
class Ask:
    """A campaign's request for an acknowledgement, as its cards carry it."""

    campaign: str  # the campaign's public id
    version: int  # the campaign's message_version
    mode: str  # "asked" or "policy" (Campaign.Acknowledgement)

    def data(self, action: str) -> dict[str, Any]:
        return {ACTION_KEY: action, "campaign": self.campaign, "version": self.version}


def ask_of(*, public_id: Any, version: int, mode: str) -> Ask | None:
    """The campaign's request, or None for a campaign that asks nothing."""
    return Ask(campaign=str(public_id), version=int(version), mode=mode) if mode else None


def content_asking(*, kind: str, text: str, card: Any, ask: Ask | None) -> tuple[str, str, Any]:
    """The message to compile (kind, text, card) with the campaign's request in it; as it was without one."""
    if ask is None:
        return kind, text, card
    if kind != "adaptive_card":
        card = {"type": "AdaptiveCard", "version": CARD_VERSION, "msteams": {"width": "Full"},
                "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
        text = ""
    card = copy.deepcopy(card) if isinstance(card, dict) else {"type": "AdaptiveCard", "body": []}
    if _version(card.get("version")) < LEAST_VERSION:
        card["version"] = CARD_VERSION
    body = card.get("body") if isinstance(card.get("body"), list) else []
    card["body"] = [*body, _asking_part(ask)]
    card["refresh"] = {"action": {"type": "Action.Execute", "title": "Refresh", "verb": VERB_REFRESH,
                                  "data": ask.data(REFRESH)}}
    return "adaptive_card", text, card


def _asking_part(ask: Ask, *, again: bool = False) -> dict[str, Any]:
    label = LABEL.get(ask.mode, LABEL["asked"])
    fallback = {"type": "Action.Submit", "title": label, "data": ask.data(ACKNOWLEDGE)}
    button = {"type": "Action.Execute", "title": label, "verb": VERB_ACKNOWLEDGE, "data": ask.data(ACKNOWLEDGE),
              "style": "positive", "fallback": fallback}
    items: list[dict[str, Any]] = []
    if again:
        items.append({"type": "TextBlock", "text": AGAIN, "wrap": True, "weight": "Bolder", "color": "Attention"})
    items.append({"type": "ActionSet", "actions": [button]})
    return {"type": "Container", "id": ACKNOWLEDGE_PART, "separator": True, "items": items}


def card_acknowledged(card: dict[str, Any], *, at: datetime, ask: Ask) -> dict[str, Any]:
    """The person's view of a card they acknowledged at ``at``: the button gives way to when they did, which Teams
    writes in the person's own language and time zone (Adaptive Cards' DATE and TIME functions)."""
    stamp = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    what = "You acknowledged this version" if ask.mode == "policy" else "Acknowledged"
    part = {"type": "Container", "id": ACKNOWLEDGE_PART, "separator": True, "items": [
        {"type": "TextBlock", "wrap": True, "color": "Good", "weight": "Bolder",
         "text": f"✅ {what} on {{{{DATE({stamp}, LONG)}}}} at {{{{TIME({stamp})}}}}"}]}
    return _with_part(card, part)


def card_asking_again(card: dict[str, Any], *, ask: Ask) -> dict[str, Any]:
    """The view of a policy the person acknowledged in an earlier version: the button, under a word that it changed."""
    return _with_part(card, _asking_part(ask, again=True))


def _with_part(card: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    card = dict(card)
    body = [element for element in card.get("body") or []
            if not (isinstance(element, dict) and element.get("id") == ACKNOWLEDGE_PART)]
    card["body"] = [*body, part]
    return card


def _version(value: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(value).split("."))
    except ValueError:
        return (0,)
