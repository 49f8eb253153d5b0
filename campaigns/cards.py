"""Adaptive Cards: the card the simple editor builds (``card_from_design``), and the checks every card
passes before it is saved (``card_problems``), whether it came from the editor, from JSON typed by
hand or from the API.

Teams shows cards up to version 1.5, and only the element and action types listed here; an unknown
type, a missing required property or a link that is not https would reach people as a broken card
or not at all, so each is refused with the place it is in (``body[2].url``).

``composer.card.js`` builds the same card in the browser; keep the two in step (a test compares them).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .rendering import link_host_problem, placeholder_problem

CARD_VERSION = "1.5"
MAX_VERSION = (1, 5)  # the newest version Teams renders
MAX_BUTTONS = 6
MAX_PROBLEMS = 10  # reported at once; more would bury the first
MAX_DEPTH = 24  # containers within containers; deeper is refused rather than walked

# --- The simple editor ------------------------------------------------------------------------


def design_normalise(design: dict[str, Any] | None) -> dict[str, Any]:
    """The editor's fields, trimmed, with empty button rows dropped."""
    design = design or {}
    buttons = []
    for button in design.get("buttons") or []:
        label = str(button.get("label") or "").strip()
        url = str(button.get("url") or "").strip()
        if label or url:
            buttons.append({"label": label, "url": url})
    return {
        "title": str(design.get("title") or "").strip(),
        "image": str(design.get("image") or "").strip(),
        "body": str(design.get("body") or "").strip(),
        "buttons": buttons,
    }


def design_problems(design: dict[str, Any]) -> dict[str, str]:
    """What is wrong with the editor's fields, keyed by field (``title``, ``buttons[0].url``). Buttons
    are numbered as given, empty rows included, so each problem lands on its own row."""
    given = design.get("buttons") or []
    design = design_normalise(design)
    problems: dict[str, str] = {}
    if not (design["title"] or design["body"] or design["image"]):
        problems["body"] = "Write something: a title, an image or a text."
    for name in ("title", "body"):
        if problem := placeholder_problem(design[name]):
            problems[name] = problem
    if design["image"] and (problem := _url_problem(design["image"], images=False)):
        problems["image"] = problem
    if len(design["buttons"]) > MAX_BUTTONS:
        problems["buttons"] = f"At most {MAX_BUTTONS} buttons."
    for n, button in enumerate(given):
        label, url = str(button.get("label") or "").strip(), str(button.get("url") or "").strip()
        if not (label or url):
            continue
        where = f"buttons[{n}]"
        if not label:
            problems[f"{where}.label"] = "A button needs a label."
        elif problem := placeholder_problem(label):
            problems[f"{where}.label"] = problem
        if not url:
            problems[f"{where}.url"] = "A button needs a link."
        elif problem := _url_problem(url, images=False):
            problems[f"{where}.url"] = problem
    return problems


def card_from_design(design: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card for the editor's fields: a large title, a full-width image, the markdown
    text, and a link button for each button row. Empty fields leave their part out."""
    design = design_normalise(design)
    body: list[dict[str, Any]] = []
    if design["title"]:
        body.append({"type": "TextBlock", "text": design["title"], "size": "Large", "weight": "Bolder",
                     "style": "heading", "wrap": True})
    if design["image"]:
        body.append({"type": "Image", "url": design["image"], "size": "Stretch", "altText": design["title"]})
    if design["body"]:
        body.append({"type": "TextBlock", "text": design["body"], "wrap": True})
    card: dict[str, Any] = {"type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    if design["buttons"]:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": button["label"], "url": button["url"]}
            for button in design["buttons"][:MAX_BUTTONS]
        ]
    card["msteams"] = {"width": "Full"}
    return card


# --- What a card may hold ----------------------------------------------------------------------

# The kinds of slot a card object can sit in, and the types each accepts. Columns, table rows and
# cells, an ImageSet's images and text runs may leave their "type" out: the slot says what they are.
_BODY = "element"
_ELEMENT_TYPES = (
    "TextBlock", "Image", "Container", "ColumnSet", "FactSet", "ImageSet", "ActionSet", "RichTextBlock", "Table",
    "Input.Text", "Input.Number", "Input.Date", "Input.Time", "Input.Toggle", "Input.ChoiceSet",
)
_ACTION_TYPES = ("Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility", "Action.Execute")
_SLOTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    # slot: (types it accepts, the type assumed when "type" is left out)
    _BODY: (_ELEMENT_TYPES, None),
    "column": (("Column",), "Column"),
    "row": (("TableRow",), "TableRow"),
    "cell": (("TableCell",), "TableCell"),
    "image": (("Image",), "Image"),
    "inline": (("TextRun",), "TextRun"),
    "action": (_ACTION_TYPES, None),
    "select": (tuple(t for t in _ACTION_TYPES if t != "Action.ShowCard"), None),
}


class _Spec:
    def __init__(self, required: tuple[str, ...] = (), children: dict[str, str] | None = None,
                 objects: dict[str, str] | None = None, urls: tuple[str, ...] = (), texts: tuple[str, ...] = (),
                 records: dict[str, tuple[str, ...]] | None = None):
        self.required = required  # properties it cannot do without
        self.children = children or {}  # list properties, and the slot their items sit in
        self.objects = objects or {}  # single-object properties, and their slot
        self.urls = urls  # properties holding a link, which must be https
        self.texts = texts  # properties that must be text
        self.records = records or {}  # lists of plain objects (facts, choices), and what each needs


_INPUT = _Spec(required=("id",), objects={"inlineAction": "select"})
_SPECS: dict[str, _Spec] = {
    "TextBlock": _Spec(required=("text",), texts=("text",)),
    "Image": _Spec(required=("url",), urls=("url",)),
    "Container": _Spec(required=("items",), children={"items": _BODY}),
    "ColumnSet": _Spec(children={"columns": "column"}),
    "Column": _Spec(children={"items": _BODY}),
    "FactSet": _Spec(required=("facts",), records={"facts": ("title", "value")}),
    "ImageSet": _Spec(required=("images",), children={"images": "image"}),
    "ActionSet": _Spec(required=("actions",), children={"actions": "action"}),
    "RichTextBlock": _Spec(required=("inlines",), children={"inlines": "inline"}),
    "TextRun": _Spec(required=("text",), texts=("text",)),
    "Table": _Spec(children={"rows": "row"}),
    "TableRow": _Spec(children={"cells": "cell"}),
    "TableCell": _Spec(required=("items",), children={"items": _BODY}),
    "Input.Text": _INPUT,
    "Input.Number": _INPUT,
    "Input.Date": _INPUT,
    "Input.Time": _INPUT,
    "Input.Toggle": _Spec(required=("id", "title")),
    "Input.ChoiceSet": _Spec(required=("id",), records={"choices": ("title", "value")}),
    "Action.OpenUrl": _Spec(required=("url",), urls=("url", "iconUrl")),
    "Action.Submit": _Spec(urls=("iconUrl",)),
    "Action.ShowCard": _Spec(urls=("iconUrl",)),
    "Action.ToggleVisibility": _Spec(required=("targetElements",), urls=("iconUrl",)),
    "Action.Execute": _Spec(urls=("iconUrl",)),
}

_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_PLACEHOLDER_ANYWHERE = re.compile(r"\{\{[^{}]*\}\}")


def _url_problem(url: str, *, images: bool) -> str | None:
    """Links must be https (Teams opens and loads nothing else); images may also be inline data. A
    placeholder may fill part of a link, after its ``https://`` and host and the ``/`` that ends it."""
    if images and url.startswith("data:image/"):
        return None
    if not url.lower().startswith("https://"):
        return "Must be an https:// link (Teams only opens and loads secure links)."
    if problem := link_host_problem(url):
        return problem
    concrete = _PLACEHOLDER_ANYWHERE.sub("x", url)
    try:
        netloc = urlsplit(concrete).netloc
    except ValueError:  # e.g. an unclosed IPv6 address, "https://[::1"
        netloc = ""
    if not netloc or any(char.isspace() for char in concrete):
        return "Is not a complete link, such as https://example.com/page."
    return None


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


class _Walker:
    """Walks a card, collecting what is wrong, each prefixed with its place."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def say(self, where: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {message}")

    def items(self, value: Any, where: str, slot: str, depth: int) -> None:
        if not isinstance(value, list):
            self.say(where, "must be a list.")
            return
        for n, item in enumerate(value):
            self.object(item, f"{where}[{n}]", slot, depth)

    def object(self, node: Any, where: str, slot: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.say(where, f"is nested more than {MAX_DEPTH} levels deep.")
            return
        accepted, assumed = _SLOTS[slot]
        if slot == "inline" and isinstance(node, str):
            return  # a plain string is a text run
        if not isinstance(node, dict):
            self.say(where, 'must be an object with a "type".')
            return
        kind = node.get("type", assumed)
        if kind is None:
            self.say(where, f'needs a "type", one of {", ".join(accepted)}.')
            return
        if not isinstance(kind, str) or kind not in accepted:
            if isinstance(kind, str) and kind in _SPECS:
                self.say(_at(where, "type"), f"{kind} cannot be used here; use one of {', '.join(accepted)}.")
            else:
                what = "an action" if slot in ("action", "select") else "an element"
                self.say(_at(where, "type"), f"{kind!r} is not {what} Teams shows; use one of {', '.join(accepted)}.")
            return
        spec = _SPECS[kind]
        for name in spec.required:
            if node.get(name) in (None, "", [], {}):
                self.say(_at(where, name), f'{_a(kind)} needs "{name}".')
        for name in spec.texts:
            if name in node and not isinstance(node[name], str):
                self.say(_at(where, name), "must be text.")
        for name in spec.urls:
            self.link(node.get(name), _at(where, name), images=kind == "Image")
        for name, child_slot in spec.children.items():
            if node.get(name) is not None:
                self.items(node[name], _at(where, name), child_slot, depth + 1)
        for name, child_slot in spec.objects.items():
            if node.get(name) is not None:
                self.object(node[name], _at(where, name), child_slot, depth + 1)
        for name, needed in spec.records.items():
            self.records(node.get(name), _at(where, name), needed)
        if kind == "Action.ShowCard" and node.get("card") is not None:
            self.card(node["card"], _at(where, "card"), depth + 1)
        self.common(node, where, depth, action=slot in ("action", "select"))

    def link(self, url: Any, where: str, *, images: bool) -> None:
        if url in (None, ""):
            return
        if not isinstance(url, str):
            self.say(where, "must be a link (text).")
        elif problem := _url_problem(url, images=images):
            self.say(where, problem)

    def records(self, value: Any, where: str, needed: tuple[str, ...]) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.say(where, "must be a list.")
            return
        for n, record in enumerate(value):
            if not isinstance(record, dict):
                self.say(f"{where}[{n}]", f"must be an object with {' and '.join(needed)}.")
                continue
            for name in needed:
                if not isinstance(record.get(name), str):
                    self.say(f"{where}[{n}].{name}", "is needed, as text.")

    def common(self, node: dict[str, Any], where: str, depth: int, *, action: bool) -> None:
        """What any element or card may carry: a click action, a background image, a fallback."""
        if node.get("selectAction") is not None:
            self.object(node["selectAction"], _at(where, "selectAction"), "select", depth + 1)
        image = node.get("backgroundImage")
        if isinstance(image, dict):
            self.link(image.get("url"), _at(where, "backgroundImage.url"), images=True)
        elif image is not None:
            self.link(image, _at(where, "backgroundImage"), images=True)
        fallback = node.get("fallback")
        if fallback is not None and fallback != "drop":
            self.object(fallback, _at(where, "fallback"), "action" if action else _BODY, depth + 1)

    def card(self, card: Any, where: str, depth: int) -> None:
        """The whole card, or one shown by Action.ShowCard."""
        if not isinstance(card, dict) or card.get("type", "AdaptiveCard") != "AdaptiveCard":
            self.say(where, 'must be an object with "type": "AdaptiveCard".')
            return
        if card.get("body") is not None:
            self.items(card["body"], _at(where, "body"), _BODY, depth + 1)
        if card.get("actions") is not None:
            self.items(card["actions"], _at(where, "actions"), "action", depth + 1)
        self.common(card, where, depth, action=False)


def version_problem(version: Any) -> str | None:
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is None:
        return f'{version!r} is not a card version such as "{CARD_VERSION}".'
    if (int(match.group(1)), int(match.group(2))) > MAX_VERSION:
        return f"Teams shows cards up to version {'.'.join(map(str, MAX_VERSION))}; this card says {version}."
    return None


def card_problems(card: dict[str, Any]) -> list[str]:
    """What would stop Teams showing this card as written, each naming its place (``body[2].url``).
    The card is already known to be an AdaptiveCard object with a non-empty body."""
    walker = _Walker()
    if problem := version_problem(card.get("version")):
        walker.say("version", problem)
    walker.card(card, "", 0)
    return walker.problems
