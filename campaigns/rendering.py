"""Message templates: placeholders such as ``{{first_name}}`` or ``{{first_name|colleague}}`` (with a
fallback) filled in per recipient.

A template is compiled once per campaign into content (``core.channels.Content``), which the channel
wraps into the JSON text of its own format (for Teams, an activity); per recipient only
the placeholders are replaced, each value JSON-escaped, so no name can break the card's JSON or
inject card elements. A value is also treated for the place it lands in, which compiling marks on
each placeholder: where Teams reads markdown (a markdown message, a TextBlock's text, a fact's title
and value) it is escaped, so a job title such as ``[Reset](https://evil.example)`` shows as text and
not as a link; in a link (a ``url``, a markdown link's target, a reference definition, an autolink,
an HTML ``href`` or a bare ``https://…`` in the text) it is percent-encoded, so it stays one path
segment or query value. A link's scheme and host must be written in the template
(``link_host_problem``, ``_markdown_links``). Preview and send both go through ``CompiledMessage.render``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bots.transport import TeamsTransport
from core.channels import Content

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


def link_host_problem(url: str) -> str | None:
    """A placeholder may fill a link's path, query or fragment, never its scheme or host: the host
    must be written out and ended by "/", "?" or "#" before the first placeholder (else a value such
    as "@evil.example" or ".evil.example" would choose where the link leads)."""
    first = url.find("{{")
    if first < 0:
        return None
    written = url[:first]
    scheme, separator, rest = written.partition("://")
    if separator and rest and any(char in rest for char in "/?#"):
        return None
    if written.lower().startswith("mailto:"):  # [Write to me](mailto:{{email}}) leads to no site
        return None
    return _HOST_PROBLEM


# A markdown link's target: after "](" (and a "<"), whole placeholders and anything but spaces and
# parentheses. One pass over the text, however many links and placeholders it holds.
_LINK_TARGET = re.compile(r"\]\(\s*<?((?:\{\{[^{}]*\}\}|[^\s()])*)")
# Other places a link's whole target stands in markdown text: a reference definition ("[1]: target",
# also inside a list item or a quote),
# an autolink ("<target>") and an HTML attribute (href="target", src='target'). Braces outside a
# whole placeholder end a target, so that a failed match never backtracks over placeholders.
_OTHER_TARGETS = re.compile(
    r"(?m)^[ \t>*+\-.)\d]*\[[^\]\n]*\]:[ \t]*(?:\n[ \t>]*)?<?((?:\{\{[^{}]*\}\}|[^\s<>{}])*)"
    r"|<((?:\{\{[^{}]*\}\}|[^\s<>{}])+)>"
    r"|(?i:\b(?:href|src)[ \t]*=[ \t]*[\"']?)((?:\{\{[^{}]*\}\}|[^\s\"'<>{}])*)"
)
# A bare link, which Teams and the preview make clickable wherever it stands: "//" after a scheme's
# ":" or at a word's start ("https://host", "//host"), or "www." at a word's start; it runs up to a
# space, a quote, a bracket or a brace that starts no placeholder. Its host is what comes before
# the first "/", "?" or "#".
_BARE_LINK_START = re.compile(r"(?<![^\s:(<\"'\[=>*_~])//|(?<![\w.\-])www\.", re.IGNORECASE)
_BARE_LINK_REST = re.compile(r"(?:\{\{[^{}]*\}\}|[^\s<>\"'()\[\]{}])*")
_HOST_END = re.compile(r"[/?#]")
# A placeholder that is part of a bare domain, with a label of letters written after or before it
# ("{{tenant}}.sharepoint.com", "intranet.{{tld}}"): the value would choose the domain. Not where the
# word holds an "@" (an address's name or domain: "{{first}}.{{last}}@example.com"), looked for
# within a host name's length.
_DOMAIN_PLACEHOLDER = re.compile(r"(?<=[^\W\d_]\.)\{\{[^{}]*\}\}|\{\{[^{}]*\}\}(?=\.[^\W\d_])")
_WORD_BEFORE = re.compile(r"\S{0,253}\Z")
_WORD_AFTER = re.compile(r"\S{0,253}")
_HOST_PROBLEM = ("A placeholder cannot make a link's host: write the address out, up to its first /, "
                 "as in https://intranet.example.com/people/{{external_id}}.")


def _markdown_links(text: str) -> list[tuple[int, int, str]]:
    """Where the links in markdown ``text`` that hold a placeholder start and end, sorted, each with
    the mark its placeholders get: ``_LINK`` (percent-encoded), or ``_HOST`` where a placeholder
    would make the link's scheme or host. Linear in the text's length."""
    if "{{" not in text:
        return []
    links = [(*match.span(1), _link_mark(match.group(1)))
             for match in _LINK_TARGET.finditer(text) if "{{" in match.group(1)]
    for match in _OTHER_TARGETS.finditer(text):
        n = next(n for n in (1, 2, 3) if match.group(n) is not None)
        if "{{" in match.group(n):
            links.append((*match.span(n), _link_mark(match.group(n))))
    covered = sorted(links)
    reached = 0  # where the last bare link ended: one that starts inside it is part of it
    for match in _BARE_LINK_START.finditer(text):
        start = match.start()
        if start < reached or _inside(covered, start):
            continue
        reached = _BARE_LINK_REST.match(text, match.end()).end()
        if "{{" in text[start:reached]:
            host = _HOST_END.split(text[match.end():reached], maxsplit=1)[0]
            links.append((start, reached, _HOST if "{{" in host else _LINK))
    covered = sorted(links)
    for match in _DOMAIN_PLACEHOLDER.finditer(text):
        start, end = match.span()
        word = (_WORD_BEFORE.search(text, max(0, start - 253), start).group()
                + _WORD_AFTER.match(text, end, end + 253).group())
        if "@" not in word and not _inside(covered, start):
            links.append((start, end, _HOST))
    return sorted(links)


def _inside(spans: list[tuple[int, int, str]], position: int) -> bool:
    n = bisect.bisect_right(spans, (position, float("inf"), "")) - 1
    return n >= 0 and position < spans[n][1]


def _markdown_link_problem(text: str) -> str | None:
    """What is wrong with a link in markdown ``text`` whose host a placeholder would make, if anything."""
    if any(mark == _HOST for _, _, mark in _markdown_links(text)):
        return _HOST_PROBLEM
    return None


def placeholder_problem(text: str) -> str | None:
    """What is wrong with the placeholders in this text, if anything. They are looked for as the
    text stands in the activity's JSON, where they are found when sending: a fallback holding a
    character JSON escapes (a tab, a quote) would not be found there, so it is refused here."""
    raw, text = text, json.dumps(text, ensure_ascii=False)[1:-1]
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        if name not in PLACEHOLDER_FIELDS and not _ATTRIBUTE.match(name):
            return f"Unknown placeholder {{{{{name}}}}}; use {', '.join(PLACEHOLDER_FIELDS)} or attributes.<key>."
    if "{{" in PLACEHOLDER.sub("", text):
        return "A placeholder is not closed or holds characters it may not: use {{field}}."
    return _markdown_link_problem(raw)


def recipient_value(recipient: Any, name: str) -> str:
    if name.startswith("attributes."):
        value = (recipient.attributes or {}).get(name.split(".", 1)[1])
    else:
        value = getattr(recipient, name, None)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --- Values in their place --------------------------------------------------------------------

# Compiling marks each placeholder with the place it sits in: "~" markdown, "^" a link, none plain
# text. Templates cannot hold these marks themselves (``placeholder_problem`` refuses them).
# "!" marks a value that would make a link's scheme or host (in a template saved before that was
# refused): it is left out, and only the template's fallback, if any, is put in its place.
_MARKDOWN, _LINK, _PLAIN, _HOST = "~", "^", "", "!"
_MARKED = re.compile(r"\{\{([~^!]?)\s*([A-Za-z0-9_.\-]+)\s*(?:\|([^{}\"\\]*))?\}\}")
# Markdown reacts to these anywhere (emphasis, code, links, HTML, strikethrough); a backslash makes each plain
# text. Others ("-", "(", "#"...) only mean something where a line starts or after "[", so names such as
# "Jean-Pierre" or "Sales (EMEA)" stay as they are written.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<~])")
# At a line's start: indentation (a code block), "#" (a heading), "-", "+" and ">" (a list, a quote),
# "1." or "1)" (a numbered list) and "=" (a heading's underline).
_LINE_INDENT = re.compile(r"(?m)^[ \t]+")
_LINE_MARKER = re.compile(r"(?m)^(\d+)([.)])(?=[ \t]|$)|^([#\-+>=])")
_URL_KEYS = frozenset({"url", "iconUrl", "backgroundImage"})
# What makes a bare link of text (Teams' own link detection, markdown-it's linkify in the preview): a
# scheme's ":" ("https:", "mailto:"), a "//", a domain's dot ("www.evil.com", "evil.com") and an
# address's "@". A backslash before each breaks the link and shows the character as written. Only
# a ":" with a letter before it and no space after, and a dot with a letter or digit before it and a
# letter after, are escaped: "10:30", "Note: x", "Sr. Engineer" and "7.5" stay as they are. A
# value's first and last such character is always escaped, as it may make a link with the text or
# the value beside it ("{{a}}{{b}}" with "evil" and ".com", "/{{path}}" with "/evil.com").
_BARE_LINK = re.compile(r"(?<=[^\W\d_]):(?=\S)|(?<=/)/|(?<=[^\W_])\.(?=[^\W\d_])|(?<=\S)@(?=\w)"
                        r"|\A[.@:/]|[.@:/]\Z")


def markdown_escape(value: str) -> str:
    """``value`` as markdown that shows it as written: no link (bare URLs and addresses included),
    emphasis, list, heading or code."""
    value = _MARKDOWN_SPECIAL.sub(r"\\\1", value.replace("\r\n", "\n").replace("\r", "\n"))
    value = _BARE_LINK.sub(lambda m: "\\" + m.group(0), value)
    value = _LINE_INDENT.sub("", value)
    return _LINE_MARKER.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", value)


def _mark(text: str, place: str) -> str:
    """``text`` with each placeholder marked for its place. In markdown, one inside a link (see
    ``_markdown_links``) is marked as a link; in a link whose host would come from a placeholder, every placeholder is
    marked to be left out (``_HOST``)."""
    if "{{" not in text:
        return text
    links: list[tuple[int, int, str]] = []  # (start, end, mark) of each link in the text
    if place == _LINK:
        links.append((0, len(text), _link_mark(text)))
    elif place == _MARKDOWN:
        links.extend(_markdown_links(text))
    starts = [start for start, _, _ in links]

    def marked(match: re.Match[str]) -> str:
        where = place
        n = bisect.bisect_right(starts, match.start()) - 1
        if n >= 0 and match.start() < links[n][1]:
            where = links[n][2]
        fallback = "" if match.group(2) is None else f"|{match.group(2)}"
        return f"{{{{{where}{match.group(1)}{fallback}}}}}"

    return PLACEHOLDER.sub(marked, text)


def _link_mark(url: str) -> str:
    return _HOST if link_host_problem(url) and not url.startswith("data:") else _LINK


def _place(key: str | None, owner: dict[str, Any] | None, listed_in: str | None) -> str:
    """How Teams reads the string at ``key`` of ``owner`` (an item of the list ``listed_in``): as a
    link, as markdown (only a TextBlock's text and a fact's title and value, as Teams documents), or
    as plain text."""
    if key in _URL_KEYS:
        return _LINK
    if key == "text" and owner is not None:
        default = "TextRun" if listed_in == "inlines" else None
        return _PLAIN if owner.get("type", default) == "TextRun" else _MARKDOWN
    if key in ("title", "value") and listed_in == "facts":
        return _MARKDOWN
    return _PLAIN


def _mark_card(node: Any, key: str | None = None, owner: dict[str, Any] | None = None,
               listed_in: str | None = None) -> Any:
    if isinstance(node, str):
        return _mark(node, _place(key, owner, listed_in))
    if isinstance(node, list):
        return [_mark_card(item, None, None, key) for item in node]
    if isinstance(node, dict):
        return {name: _mark_card(value, name, node, listed_in) for name, value in node.items()}
    return node


def _filled(value: str, place: str) -> str:
    if place == _MARKDOWN:
        return markdown_escape(value)
    if place == _LINK:
        return quote(value, safe="")
    return value


@dataclass(frozen=True)
class CompiledMessage:
    activity_json: str  # the message in the channel's format as JSON text, placeholders marked for their place

    def render(self, recipient: Any) -> bytes:
        """The activity for one person: the one way a message is filled in, for sends and previews.
        A value is treated for its place; a fallback is the template's own text, kept as written."""

        def fill(match: re.Match[str]) -> str:
            place, name, fallback = match.groups()
            value = "" if place == _HOST else recipient_value(recipient, name)
            value = _filled(value, place) if value else (fallback or "").strip()
            return json.dumps(value, ensure_ascii=False)[1:-1]

        return _MARKED.sub(fill, self.activity_json).encode("utf-8")


def compile_message(
    *, kind: str, text: str, card: Any, wrap: Callable[[Content], dict[str, Any]] = TeamsTransport.wrap
) -> CompiledMessage:
    """The template as content with its placeholders marked, wrapped by the channel (``wrap``) into its
    own format once, so that filling in one person's values is a substitution in text."""
    if kind == "adaptive_card":
        content = Content(card=_mark_card(card), summary=_mark(text, _PLAIN) if text else None)
    else:
        content = Content(text=_mark(text, _MARKDOWN))
    return CompiledMessage(activity_json=json.dumps(wrap(content), ensure_ascii=False, separators=(",", ":")))
