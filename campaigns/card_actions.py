"""Crier's own parts of the cards it sends: the button that acknowledges a message, a poll, and the card's ``refresh``.

A campaign that asks for an acknowledgement, or has a poll, sends its card with parts of Crier's own at the end of
its body, each a ``Container`` with a known id:

- the acknowledgement (``ACKNOWLEDGE_PART``): a Universal Actions button (``Action.Execute``, with an
  ``Action.Submit`` fallback for Teams clients too old for it);
- the poll (``POLL_PART``): its question, its options as an ``Input.ChoiceSet`` (``POLL_INPUT``: one or several
  choices), and a button that sends the answer.

Pressed, a button makes Teams send Crier an invoke, and Teams shows the person the card Crier answers with: the
same card, with the button replaced by when they acknowledged (``card_acknowledged``), or with their answer
(``card_answered``). The card's ``refresh`` makes Teams ask for that view whenever it shows the card, on any of the
person's devices. In a one-to-one chat Teams refreshes for its one person without a list of user ids.

A markdown message has no card to carry them: it is sent as a card holding its text (Adaptive Cards' markdown,
which lacks headings and tables).

A button's data names the campaign (its public id) and the version of its message; whose it is, Teams says (the
invoke's sender), never the data: ``delivery.card_views`` checks it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from .cards import CARD_VERSION

ACTION_KEY = "crier_action"  # where an Action.Submit's data says what it is (bots.services routes on it)
ACKNOWLEDGE = "acknowledge"
ANSWER = "answer"
REFRESH = "refresh"
VERB_ACKNOWLEDGE = "crier.acknowledge"  # Action.Execute verbs
VERB_ANSWER = "crier.answer"
VERB_REFRESH = "crier.refresh"
ACKNOWLEDGE_PART = "crier-acknowledge"  # the ids of Crier's parts of the card
POLL_PART = "crier-poll"
POLL_INPUT = "crier_poll"  # the poll's choice set: Teams sends its value ("1", or "0,2") in the action's data
LEAST_VERSION = (1, 5)  # below 1.5, Teams documents, Action.Execute is not drawn and the card never refreshes
SUMMARY_MOST = 300  # a markdown message sent as a card keeps its start as the notification's preview

LABEL = {"asked": "Acknowledge", "policy": "I have read and understood this"}
AGAIN = "This was changed since you acknowledged it: please read it again, and acknowledge it once more."


@dataclass(frozen=True)
class Poll:
    question: str
    options: tuple[str, ...]
    multiple: bool = False
    closes_at: datetime | None = None
    sent_closed: bool = False  # it had closed when the message was sent: the card shows it closed

    def as_sent(self, now: datetime) -> Poll:
        """The poll as a message sent at ``now`` shows it."""
        return replace(self, sent_closed=True) if self.closed(now) and not self.sent_closed else self

    def closed(self, now: datetime) -> bool:
        return self.closes_at is not None and now >= self.closes_at


@dataclass(frozen=True)
class Ask:
    """What a campaign's cards ask of each person: an acknowledgement (``mode``: "asked" or "policy", or "" for
    none) and a poll (or None)."""

    campaign: str  # the campaign's public id
    version: int  # the campaign's message_version
    mode: str = ""
    poll: Poll | None = None

    def data(self, action: str) -> dict[str, Any]:
        return {ACTION_KEY: action, "campaign": self.campaign, "version": self.version}


def ask_of(*, public_id: Any, version: int, mode: str, poll: Poll | None = None) -> Ask | None:
    """What the campaign asks, or None for a campaign that asks nothing."""
    if not mode and poll is None:
        return None
    return Ask(campaign=str(public_id), version=int(version), mode=mode or "", poll=poll)


def poll_of(*, question: str, options: Any, multiple: bool, closes_at: datetime | None) -> Poll | None:
    """A campaign's poll from its fields, or None when it has none."""
    if not question or not isinstance(options, (list, tuple)) or not options:
        return None
    return Poll(question=question, options=tuple(str(option) for option in options), multiple=bool(multiple),
                closes_at=closes_at)


def campaign_ask(campaign: Any, *, sent_at: datetime | None = None) -> Ask | None:
    """What a ``Campaign`` asks, from its fields; as a message sent at ``sent_at`` shows it, when given."""
    poll = poll_of(question=campaign.poll_question, options=campaign.poll_options, multiple=campaign.poll_multiple,
                   closes_at=campaign.poll_closes_at)
    if poll is not None and sent_at is not None:
        poll = poll.as_sent(sent_at)
    # A follow-up's card asks on behalf of the campaign it follows, of that campaign's version (delivery.follow_ups).
    version = campaign.follows.message_version if getattr(campaign, "follows_id", None) else campaign.message_version
    return ask_of(public_id=campaign.public_id, version=version, mode=campaign.acknowledgement, poll=poll)


def content_asking(*, kind: str, text: str, card: Any, ask: Ask | None) -> tuple[str, str, Any]:
    """The message to compile (kind, text, card) with the campaign's parts in it; as it was when it asks nothing."""
    if ask is None:
        return kind, text, card
    if kind != "adaptive_card":
        card = {"type": "AdaptiveCard", "version": CARD_VERSION, "msteams": {"width": "Full"},
                "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
        text = _summary(text)
    card = copy.deepcopy(card) if isinstance(card, dict) else {"type": "AdaptiveCard", "body": []}
    if _version(card.get("version")) < LEAST_VERSION:
        card["version"] = CARD_VERSION
    body = card.get("body") if isinstance(card.get("body"), list) else []
    parts = [*([_poll_closed_part(ask.poll, said="") if ask.poll is not None and ask.poll.sent_closed
                else _poll_part(ask)] if ask.poll is not None else []),
             *([_asking_part(ask)] if ask.mode else [])]
    card["body"] = [*body, *parts]
    card["refresh"] = {"action": {"type": "Action.Execute", "title": "Refresh", "verb": VERB_REFRESH,
                                  "data": ask.data(REFRESH)}}
    return "adaptive_card", text, card


def _summary(text: str) -> str:
    """The start of a markdown message, for the preview Teams shows in notifications and the chat list: its first
    paragraph, at most ``SUMMARY_MOST`` characters, never ending inside a placeholder."""
    start = text.strip().split("\n\n", 1)[0][:SUMMARY_MOST]
    opened, closed = start.rfind("{{"), start.rfind("}}")
    return start[:opened] if opened > closed else start


def _button(ask: Ask, *, title: str, verb: str, action: str, style: str = "positive",
            inputs: str = "none") -> dict[str, Any]:
    """A button of Crier's, with its fallback. ``inputs`` is which of the card's inputs it checks and sends: none
    for the acknowledgement (an unanswered poll must not hold it back), all of them ("auto") for the poll's."""
    fallback = {"type": "Action.Submit", "title": title, "data": ask.data(action), "associatedInputs": inputs}
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": ask.data(action), "style": style,
            "associatedInputs": inputs, "fallback": fallback}


def _asking_part(ask: Ask, *, again: bool = False) -> dict[str, Any]:
    label = LABEL.get(ask.mode, LABEL["asked"])
    items: list[dict[str, Any]] = []
    if again:
        items.append({"type": "TextBlock", "text": AGAIN, "wrap": True, "weight": "Bolder", "color": "Attention"})
    items.append({"type": "ActionSet", "actions": [_button(ask, title=label, verb=VERB_ACKNOWLEDGE,
                                                           action=ACKNOWLEDGE)]})
    return {"type": "Container", "id": ACKNOWLEDGE_PART, "separator": True, "items": items}


def _poll_part(ask: Ask, *, chosen: tuple[int, ...] = (), note: str = "") -> dict[str, Any]:
    poll = ask.poll
    assert poll is not None
    # Not isRequired: Teams would then hold back every other button of the card (the acknowledgement, the author's
    # opt-out) until the poll is answered. An answer with no choice is refused by Crier instead.
    choices = {"type": "Input.ChoiceSet", "id": POLL_INPUT, "style": "expanded", "isMultiSelect": poll.multiple,
               "choices": [{"title": option, "value": str(n)} for n, option in enumerate(poll.options)]}
    if chosen:
        choices["value"] = ",".join(str(n) for n in chosen)
    items: list[dict[str, Any]] = [{"type": "TextBlock", "text": poll.question, "wrap": True, "weight": "Bolder"},
                                   choices]
    if note:
        items.append({"type": "TextBlock", "text": note, "wrap": True, "isSubtle": True})
    title = "Change my answer" if chosen else "Answer"
    items.append({"type": "ActionSet", "actions": [_button(ask, title=title, verb=VERB_ANSWER, action=ANSWER,
                                                           style="default", inputs="auto")]})
    return {"type": "Container", "id": POLL_PART, "separator": True, "items": items}


def _poll_closed_part(poll: Poll, *, said: str) -> dict[str, Any]:
    """A poll that takes no more answers: its question, when it closed, and what the person said."""
    return {"type": "Container", "id": POLL_PART, "separator": True, "items": [
        {"type": "TextBlock", "text": poll.question, "wrap": True, "weight": "Bolder"},
        {"type": "TextBlock", "text": f"This poll closed on {_stamp(poll.closes_at)}.{said}",  # type: ignore[arg-type]
         "wrap": True}]}


def _stamp(at: datetime) -> str:
    """``at`` as Adaptive Cards' DATE and TIME functions want it, which Teams writes in the person's own language
    and time zone."""
    value = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{{{{DATE({value}, LONG)}}}} at {{{{TIME({value})}}}}"


def card_acknowledged(card: dict[str, Any], *, at: datetime, ask: Ask) -> dict[str, Any]:
    """The person's view of a card they acknowledged at ``at``: the button gives way to when they did."""
    what = "You acknowledged this version" if ask.mode == "policy" else "Acknowledged"
    part = {"type": "Container", "id": ACKNOWLEDGE_PART, "separator": True, "items": [
        {"type": "TextBlock", "wrap": True, "color": "Good", "weight": "Bolder", "text": f"✅ {what} on {_stamp(at)}"}]}
    return _with_part(card, part)


def card_asking_again(card: dict[str, Any], *, ask: Ask) -> dict[str, Any]:
    """The view of a policy the person acknowledged in an earlier version: the button, under a word that it changed."""
    return _with_part(card, _asking_part(ask, again=True))


def card_answered(card: dict[str, Any], *, ask: Ask, chosen: tuple[int, ...], at: datetime | None,
                  now: datetime) -> dict[str, Any]:
    """The person's view of the poll: their answer chosen, changeable until the poll closes; once it has closed,
    their answer (or that they gave none), and no button."""
    poll = ask.poll
    assert poll is not None
    titles = ", ".join(poll.options[n] for n in chosen if 0 <= n < len(poll.options))
    if poll.closed(now):
        return _with_part(card, _poll_closed_part(poll, said=f" Your answer: {titles}." if chosen
                                                  else " You did not answer."))
    if not chosen:
        return card
    until = f" You can change it until {_stamp(poll.closes_at)}." if poll.closes_at else " You can change it."
    note = f"✅ Your answer: {titles}, on {_stamp(at)}.{until}" if at else f"✅ Your answer: {titles}.{until}"
    return _with_part(card, _poll_part(ask, chosen=chosen, note=note))


def _with_part(card: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """The card with Crier's part of that id replaced, in its place."""
    card = dict(card)
    body = list(card.get("body") or [])
    for n, element in enumerate(body):
        if isinstance(element, dict) and element.get("id") == part["id"]:
            body[n] = part
            break
    else:
        body.append(part)
    card["body"] = body
    return card


def _version(value: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(value).split("."))
    except ValueError:
        return (0,)
