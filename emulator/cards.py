"""Adaptive Cards as a Teams client reads them for Universal Actions: the ``Action.Execute`` buttons a card
offers (in its ``actions``, in ``ActionSet`` elements anywhere in its body, as a ``selectAction``, in an
``Action.ShowCard``'s card), its inputs, its ``refresh`` action, and the ``data`` an invoke carries.

An ``Action.Execute`` is named by its ``id``, else its ``title``, else its position among the card's
``Action.Execute`` actions (``#1``, ``#2``...; a name an earlier action already has becomes the position too),
so every button of a card has a name of its own that stays the same however often the card is read.
Nothing here touches the store or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
EXECUTE = "Action.Execute"
MAX_DEPTH = 40
# Where elements and actions nest, in the order a client draws them: a card's body before its actions.
# ``fallback`` (for older clients) and ``refresh`` are not buttons and are left out.
_NESTED = ("body", "selectAction", "inlineAction", "items", "columns", "rows", "cells", "inlines", "images",
           "actions", "card")


@dataclass
class CardActions:
    """What a person can do with a card: its ``Action.Execute`` buttons (name, action), its inputs
    (``Input.*`` elements with an id), and its refresh action."""

    executes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    refresh: dict[str, Any] | None = None

    def find(self, selector: str | None) -> tuple[str, dict[str, Any]] | None:
        """The action named ``selector`` (its name, else its id, its title or ``#position``); the first one
        when ``selector`` is None."""
        if selector is None:
            return self.executes[0] if self.executes else None
        for name, action in self.executes:
            if name == selector:
                return name, action
        for key in ("id", "title"):
            for name, action in self.executes:
                if action.get(key) == selector:
                    return name, action
        for position, (name, action) in enumerate(self.executes, 1):
            if selector == f"#{position}":
                return name, action
        return None

    def names(self) -> list[str]:
        return [name for name, _ in self.executes]

    def input_ids(self) -> list[str]:
        return [element["id"] for element in self.inputs]

    def defaults(self) -> dict[str, Any]:
        """The inputs' initial values (those that have one), as the renderer sends them untouched."""
        return {element["id"]: element["value"] for element in self.inputs if element.get("value") is not None}


def _walk(node: Any, depth: int, found: CardActions) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, list):
        for child in node:
            _walk(child, depth + 1, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == EXECUTE:
        found.executes.append(("", node))
        return
    if isinstance(kind, str) and kind.startswith("Input.") and isinstance(node.get("id"), str) and node["id"]:
        found.inputs.append(node)
    for key in _NESTED:
        if key in node:
            _walk(node[key], depth + 1, found)


def _name(action: dict[str, Any], position: int, taken: set[str]) -> str:
    for key in ("id", "title"):
        value = action.get(key)
        if isinstance(value, str) and value and value not in taken:
            return value
        if isinstance(value, str) and value:
            break  # an id or title an earlier action has: the position tells them apart
    return f"#{position}"


def refresh_action(card: Any) -> dict[str, Any] | None:
    """The card's ``refresh.action``, when it is an ``Action.Execute`` (the only kind Teams runs)."""
    refresh = card.get("refresh") if isinstance(card, dict) else None
    action = refresh.get("action") if isinstance(refresh, dict) else None
    return action if isinstance(action, dict) and action.get("type") == EXECUTE else None


def read_card(card: Any) -> CardActions:
    """The card's buttons, inputs and refresh action (nothing for what is not a card)."""
    found = CardActions()
    if not isinstance(card, dict):
        return found
    _walk(card, 0, found)
    taken: set[str] = set()
    named = []
    for position, (_, action) in enumerate(found.executes, 1):
        name = _name(action, position, taken)
        taken.add(name)
        named.append((name, action))
    found.executes = named
    found.refresh = refresh_action(card)
    return found


def first_card(activity: Any) -> tuple[int, dict[str, Any]] | None:
    """The position and content of the activity's first Adaptive Card attachment: the card a person acts on."""
    attachments = activity.get("attachments") if isinstance(activity, dict) else None
    if not isinstance(attachments, list):
        return None
    for index, attachment in enumerate(attachments):
        if (isinstance(attachment, dict) and attachment.get("contentType") == ADAPTIVE_CARD
                and isinstance(attachment.get("content"), dict)):
            return index, attachment["content"]
    return None


def with_card(activity: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The activity as the person sees it once ``card`` took the place of its first Adaptive Card."""
    found = first_card(activity)
    if found is None:
        return activity
    attachments = list(activity["attachments"])
    attachments[found[0]] = {**attachments[found[0]], "content": card}
    return {**activity, "attachments": attachments}


def action_data(action: dict[str, Any], inputs: dict[str, Any] | None) -> Any:
    """The ``data`` an invoke carries: the action's data with the inputs' values merged in (the inputs win);
    data that is not an object gives way to the inputs, as the Adaptive Cards renderer does."""
    data = action.get("data")
    if not inputs:
        return {} if data is None else data
    if isinstance(data, dict):
        return {**data, **inputs}
    return dict(inputs)


def skeleton(card: Any) -> dict[str, Any] | None:
    """The little of a card the emulator needs to press its buttons when it does not keep message bodies: its
    ``Action.Execute`` actions (in the same order, so with the same names), its inputs' ids and initial values,
    and its refresh action. None for a card without any of them."""
    found = read_card(card)
    if not found.executes and found.refresh is None:
        return None
    inputs = [
        {"type": element.get("type"), "id": element["id"],
         **({"value": element["value"]} if element.get("value") is not None else {})}
        for element in found.inputs
    ]
    result: dict[str, Any] = {"type": "AdaptiveCard", "body": inputs, "actions": [a for _, a in found.executes]}
    if found.refresh is not None:
        result["refresh"] = {"action": found.refresh}
    return result
