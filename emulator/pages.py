"""The inbox pages people watch during the demo: ``/`` (stats and users) and ``/inbox/{aad}`` (what the
bot sent one user, newest first, each message with what the person can do with it in Teams: read up to it, react,
press its card's ``Action.Execute`` buttons, choosing among its choice inputs, and have its ``refresh`` sent).
Every value from a user or the bot is HTML-escaped.

Messages are drawn in the browser as Teams draws them: text as markdown and cards by Microsoft's
Adaptive Cards renderer, with the admin's own preview script (campaigns/static/crier/card-preview.js),
all served by the emulator from the project's files and node_modules (no CDN). The page holds a plain
HTML rendering of each message too, shown until (or unless) the scripts run."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .bot_client import reaction_activity, read_receipt_activity
from .cards import read_card
from .config import ConfigError
from .context import Context
from .invokes import InvokeResult, Invoker, what_teams_shows
from .messages import Message
from .state import User, iso, normalize_aad

USERS_SHOWN = 500
MESSAGES_SHOWN = 200
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
INPUT_FIELD = "input:"  # form fields of a card's inputs: this and the input's id (no clash with the form's own)

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
# The only files /static/ serves: a fixed table, so no path from a request reaches the disk.
ASSETS: dict[str, tuple[Path, str]] = {
    "markdown-it.min.js": (NODE_MODULES / "markdown-it" / "dist" / "browser" / "markdown-it.umd.min.js",
                           "text/javascript"),
    "adaptivecards.min.js": (NODE_MODULES / "adaptivecards" / "dist" / "adaptivecards.min.js", "text/javascript"),
    "adaptivecards.css": (NODE_MODULES / "adaptivecards" / "dist" / "adaptivecards.css", "text/css"),
    "card-preview.js": (ROOT / "campaigns" / "static" / "crier" / "card-preview.js", "text/javascript"),
}
ASSET_CACHE_SECONDS = 3600  # the page reloads every three seconds; its scripts need not
SCRIPTS = "".join(
    f'<script src="/static/{name}" defer></script>'
    for name in ("markdown-it.min.js", "adaptivecards.min.js", "card-preview.js")
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328;
       background: #f5f5f7; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
a { color: #4f52b2; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: .35rem .8rem; border-bottom: 1px solid #e1e1e6; text-align: left; font-size: .9rem; }
th { background: #ebebf5; }
.stats td:first-child { color: #555; }
.message { background: #fff; border-radius: 8px; padding: .8rem 1rem; margin: .8rem 0; max-width: 48rem;
           box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.message.deleted { opacity: .5; }
.meta { color: #666; font-size: .8rem; margin-bottom: .4rem; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 4px; font-size: .75rem; margin-left: .4rem; }
.badge.updated { background: #fff4ce; } .badge.deleted { background: #fde7e9; }
.badge.answered { background: #dff6dd; }
.note { background: #fff4ce; border-radius: 6px; padding: .5rem .8rem; max-width: 48rem; }
.text { white-space: pre-wrap; }
.card { border: 1px solid #e1e1e6; border-radius: 6px; padding: .6rem .8rem; margin-top: .5rem; }
.card img { max-width: 100%; max-height: 12rem; display: block; margin: .3rem 0; }
.card dl { display: grid; grid-template-columns: max-content auto; gap: .2rem .8rem; margin: .3rem 0; }
.card dt { font-weight: 600; } .card dd { margin: 0; }
.reading { margin-top: .5rem; } .reading form { display: inline; }
.reading button { font-size: .8rem; margin-right: .3rem; }
.reading form.execute { display: block; margin-top: .4rem; }
.choices { border: 1px solid #e1e1e6; border-radius: 6px; margin: .3rem 0; font-size: .85rem; }
.choices label { margin-right: .8rem; }
.action { display: inline-block; border: 1px solid #4f52b2; color: #4f52b2; border-radius: 4px;
          padding: .15rem .6rem; margin: .3rem .4rem 0 0; font-size: .85rem; }
pre { background: #f0f0f3; padding: .5rem; overflow-x: auto; font-size: .8rem; }
"""


# Scripts only from the emulator itself, none inline: whatever a message holds cannot run as script. Styles
# allow the page's own <style> and the renderer's style attributes; images, the https ones cards show.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _page(title: str, body: str) -> web.Response:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="3">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/static/adaptivecards.css">'
        f"<style>{STYLE}</style>{SCRIPTS}</head><body>{body}</body></html>"
    )
    return web.Response(
        text=html, content_type="text/html", charset="utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
    )


def _json_script(element_id: str, value: Any) -> str:
    """``value`` as a JSON data block the page's script reads, escaped as Django's json_script does
    (no ``</script>``, ``<!--`` or ``&`` can end or change it)."""
    text = json.dumps(value, ensure_ascii=False)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def _drawn(element_id: str, activity: dict[str, Any], fallback: str) -> str:
    """A part of a message the renderer draws from ``activity``; ``fallback`` until it does."""
    source = escape(element_id)
    return f'{_json_script(element_id, activity)}<div class="drawn" data-activity-source="{source}">{fallback}</div>'


def _safe_image_url(url: Any) -> str | None:
    if isinstance(url, str) and url.lower().startswith(("https://", "http://", "data:image/")):
        return url
    return None


def render_element(element: Any, depth: int = 0) -> str:
    """One Adaptive Card element (and its children) as readable HTML."""
    if depth > 20 or not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "TextBlock":
        weight = "600" if element.get("weight") in ("Bolder", "bolder") else "normal"
        return f'<div class="text" style="font-weight:{weight}">{escape(str(element.get("text", "")))}</div>'
    if kind == "RichTextBlock":
        inlines = element.get("inlines") or []
        texts = [i.get("text", "") if isinstance(i, dict) else str(i) for i in inlines]
        return f'<div class="text">{escape("".join(map(str, texts)))}</div>'
    if kind == "Image":
        url = _safe_image_url(element.get("url"))
        alt = escape(str(element.get("altText", "")))
        if url is None:
            return f"<div>[image: {escape(str(element.get('url', '')))}]</div>"
        return f'<img src="{escape(url)}" alt="{alt}">'
    if kind == "ImageSet":
        return "".join(render_element(image, depth + 1) for image in element.get("images") or [])
    if kind == "FactSet":
        facts = "".join(
            f"<dt>{escape(str(f.get('title', '')))}</dt><dd>{escape(str(f.get('value', '')))}</dd>"
            for f in element.get("facts") or []
            if isinstance(f, dict)
        )
        return f"<dl>{facts}</dl>"
    if kind == "ActionSet":
        return render_actions(element.get("actions"))
    children: list[Any] = []
    for key in ("items", "columns", "body"):
        if isinstance(element.get(key), list):
            children.extend(element[key])
    if children:
        return "<div>" + "".join(render_element(child, depth + 1) for child in children) + "</div>"
    if kind and str(kind).startswith("Input."):
        label = element.get("label") or element.get("placeholder") or element.get("id") or ""
        return f"<div>[{escape(str(kind))}: {escape(str(label))}]</div>"
    return ""


def render_actions(actions: Any) -> str:
    if not isinstance(actions, list):
        return ""
    parts = []
    for action in actions:
        if not isinstance(action, dict):
            continue
        title = escape(str(action.get("title") or action.get("type") or "action"))
        url = action.get("url")
        suffix = f" → {escape(str(url))}" if isinstance(url, str) else ""
        parts.append(f'<span class="action">{title}{suffix}</span>')
    return "<div>" + "".join(parts) + "</div>"


def render_attachment(attachment: Any) -> str:
    if not isinstance(attachment, dict):
        return ""
    content = attachment.get("content")
    if attachment.get("contentType") == ADAPTIVE_CARD and isinstance(content, dict):
        body = "".join(render_element(element) for element in content.get("body") or [])
        return f'<div class="card">{body}{render_actions(content.get("actions"))}</div>'
    dump = json.dumps(content, indent=2, ensure_ascii=False)[:4000]
    return f'<div class="card">{escape(str(attachment.get("contentType", "")))}<pre>{escape(dump)}</pre></div>'


REACTIONS = ("like", "heart", "laugh", "surprised")


def _reading(message: Message, inbox: str) -> str:
    """What the person can do with a message, as in Teams: read up to it (Teams' read receipt) and react."""
    activity_id = escape(message.activity_id)
    read = (f'<form method="post" action="{inbox}/read"><input type="hidden" name="activity_id" value="{activity_id}">'
            '<button type="submit">Read up to here</button></form>')
    react = "".join(
        f'<form method="post" action="{inbox}/react"><input type="hidden" name="activity_id" value="{activity_id}">'
        f'<input type="hidden" name="type" value="{kind}"><button type="submit">{kind}</button></form>'
        for kind in REACTIONS)
    return f'<div class="reading">{read}{react}{_card_actions(message, inbox)}</div>'


def _choice_set(element: dict[str, Any]) -> str:
    """An ``Input.ChoiceSet`` as radio buttons (checkboxes when it is multi-select), its initial value chosen."""
    kind = "checkbox" if element.get("isMultiSelect") is True else "radio"
    initial = element.get("value")
    chosen = set(str(initial).split(",")) if initial is not None else set()
    name = escape(INPUT_FIELD + element["id"])
    choices = element.get("choices") if isinstance(element.get("choices"), list) else []
    options = ""
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("value") is None:
            continue
        value = str(choice["value"])
        checked = " checked" if value in chosen else ""
        options += (f'<label><input type="{kind}" name="{name}" value="{escape(value)}"{checked}> '
                    f'{escape(str(choice.get("title") or value))}</label>')
    legend = escape(str(element.get("label") or element["id"]))
    return f'<fieldset class="choices"><legend>{legend}</legend>{options}</fieldset>'


def _card_actions(message: Message, inbox: str) -> str:
    """The buttons of the card the person sees: one per ``Action.Execute`` (with the card's choice inputs, in
    the same form), and the refresh Teams sends when it shows a card that has one."""
    actions = read_card(message.card)
    hidden = f'<input type="hidden" name="activity_id" value="{escape(message.activity_id)}">'
    parts = ""
    if actions.executes:
        choices = "".join(_choice_set(element) for element in actions.inputs
                          if element.get("type") == "Input.ChoiceSet")
        buttons = "".join(
            f'<button type="submit" name="action" value="{escape(name)}">'
            f'{escape(action["title"] if isinstance(action.get("title"), str) and action["title"] else name)}</button>'
            for name, action in actions.executes)
        parts += f'<form method="post" action="{inbox}/execute" class="execute">{hidden}{choices}{buttons}</form>'
    if actions.refresh is not None:
        parts += (f'<form method="post" action="{inbox}/refresh">{hidden}'
                  '<button type="submit">Refresh, as Teams does when it shows the card</button></form>')
    return parts


def render_message(message: Message, number: int = 0, inbox: str | None = None) -> str:
    """One message; ``number`` keeps the ids of its parts unique on the page; ``inbox``, the page's address,
    offers to read it and react to it."""
    badges = ""
    if message.updated:
        badges += f'<span class="badge updated">updated ×{message.updated}</span>'
    if message.answered:
        badges += f'<span class="badge answered">card updated by the bot\'s answer ×{message.answered}</span>'
    if message.deleted:
        badges += '<span class="badge deleted">deleted</span>'
    activity = message.seen_activity
    if activity is None:
        content = f"<div class=meta>body not kept (sha256 {message.digest.hex()[:16]}…)</div>"
    else:
        text = activity.get("text")
        content = ""
        if isinstance(text, str) and text:
            content = _drawn(f"m{number}-text", {"text": text}, f'<div class="text">{escape(text)}</div>')
        attachments = activity.get("attachments")
        if isinstance(attachments, list):
            for index, attachment in enumerate(attachments):
                fallback = render_attachment(attachment)
                card = isinstance(attachment, dict) and attachment.get("contentType") == ADAPTIVE_CARD
                card = card and isinstance(attachment.get("content"), dict)
                content += (
                    _drawn(f"m{number}-card{index}", {"attachments": [attachment]}, fallback) if card else fallback
                )
    css = "message deleted" if message.deleted else "message"
    meta = f"{escape(iso(message.received_at))} · activity {escape(message.activity_id)}"
    reading = _reading(message, inbox) if inbox and not message.deleted else ""
    return f'<div class="{css}"><div class="meta">{meta}{badges}</div>{content}{reading}</div>'


class Pages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.invoker = Invoker(ctx)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.index), web.get("/inbox/{aad}", self.inbox), web.get("/static/{name}", self.asset),
                web.post("/inbox/{aad}/read", self.read), web.post("/inbox/{aad}/react", self.react),
                web.post("/inbox/{aad}/execute", self.execute), web.post("/inbox/{aad}/refresh", self.refresh)]

    def _user(self, request: web.Request) -> User:
        aad = normalize_aad(request.match_info["aad"])
        user = self.ctx.store.users.get(aad) if aad else None
        if user is None:
            raise web.HTTPNotFound(text="unknown user")
        return user

    async def _sent_to_bot(self, request: web.Request, make) -> web.Response:
        """Reads the form (an activity id of one of the bot's messages to this person), sends the bot what Teams
        would, and goes back to the inbox."""
        user = self._user(request)
        form = await request.post()
        activity_id = str(form.get("activity_id") or "")
        seq = self.ctx.store.log.seq_of(activity_id) if activity_id.isdigit() else None
        if seq is None or seq not in user.messages:
            raise web.HTTPBadRequest(text="not one of the bot's messages to this person")
        ctx = self.ctx
        activity = make(user, ctx.store.conversation_for(user), ctx.service_url, ctx.settings.app_id, activity_id, form)
        await ctx.bot.post(ctx.config.bot_endpoint, activity)
        raise web.HTTPSeeOther(f"/inbox/{quote(user.aad_object_id)}")

    async def read(self, request: web.Request) -> web.Response:
        self.ctx.store.read_receipts += 1
        return await self._sent_to_bot(request, lambda *args: read_receipt_activity(*args[:5]))

    async def react(self, request: web.Request) -> web.Response:
        def make(user, conversation_id, service_url, app_id, activity_id, form):
            kind = str(form.get("type") or "")
            if kind not in REACTIONS:
                raise web.HTTPBadRequest(text="unknown reaction")
            return reaction_activity(user, conversation_id, service_url, app_id, activity_id, kind, removed=False)

        return await self._sent_to_bot(request, make)

    async def execute(self, request: web.Request) -> web.Response:
        """The person pressed one of the card's ``Action.Execute`` buttons, having chosen among its choices."""
        user = self._user(request)
        form = await request.post()
        try:
            seq = self.invoker.target(user, str(form.get("activity_id") or ""))
            actions = self.invoker.card_actions(seq)
            found = actions.find(str(form.get("action") or "") or None)
            if found is None:
                raise ConfigError("the card has no such Action.Execute")
            action = found[1]
            inputs = self.invoker.inputs_for(actions, action, None)
            if action.get("associatedInputs") != "none":
                for element in actions.inputs:
                    if element.get("type") == "Input.ChoiceSet":
                        chosen = [str(value) for value in form.getall(INPUT_FIELD + element["id"], [])]
                        inputs.pop(element["id"], None)
                        if chosen:
                            inputs[element["id"]] = ",".join(chosen)  # a multi-select's values, as the renderer
        except ConfigError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return self._answered(user, await self.invoker.invoke(user, seq, action, "manual", inputs))

    async def refresh(self, request: web.Request) -> web.Response:
        """Teams showed the card again: its ``refresh.action`` goes to the bot."""
        user = self._user(request)
        form = await request.post()
        try:
            seq = self.invoker.target(user, str(form.get("activity_id") or ""))
            result = await self.invoker.refresh(user, seq)
        except ConfigError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return self._answered(user, result)

    def _answered(self, user: User, result: InvokeResult) -> web.Response:
        """Back to the inbox, where what Teams shows for an answer that is not a card appears once."""
        note = what_teams_shows(result)
        if note is not None:
            self.ctx.store.notes[user.aad_object_id] = note
        raise web.HTTPSeeOther(f"/inbox/{quote(user.aad_object_id)}")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """The renderer's scripts and style, from the project's files (``make`` installs node_modules)."""
        found = ASSETS.get(request.match_info["name"])
        if found is None or not found[0].is_file():
            raise web.HTTPNotFound(text="no such file")
        path, content_type = found
        headers = {"Content-Type": f"{content_type}; charset=utf-8", "Cache-Control": f"max-age={ASSET_CACHE_SECONDS}"}
        return web.FileResponse(path, headers=headers)

    async def index(self, request: web.Request) -> web.Response:
        store = self.ctx.store
        stats = store.stats(self.ctx.faults.counts)
        stat_rows = "".join(
            f"<tr><td>{escape(key)}</td><td>{escape(json.dumps(value))}</td></tr>" for key, value in stats.items()
        )
        users = list(store.users.values())[:USERS_SHOWN]
        user_rows = "".join(
            f'<tr><td><a href="/inbox/{quote(u.aad_object_id)}">{escape(u.name)}</a></td>'
            f"<td>{escape(u.aad_object_id)}</td><td>{len(u.messages)}</td>"
            f"<td>{'blocked ' if u.blocked else ''}{'uninstalled' if u.uninstalled else ''}"
            f"{'' if u.installed or u.uninstalled else 'not installed'}</td></tr>"
            for u in users
        )
        more = f"<p>… and {len(store.users) - USERS_SHOWN} more users.</p>" if len(store.users) > USERS_SHOWN else ""
        body = (
            "<h1>Teams emulator</h1>"
            f'<table class="stats">{stat_rows}</table>'
            "<h2>Users</h2>"
            "<table><tr><th>Name</th><th>Entra object id</th><th>Messages</th><th>State</th></tr>"
            f"{user_rows}</table>{more}"
        )
        return _page("Teams emulator", body)

    async def inbox(self, request: web.Request) -> web.Response:
        store = self.ctx.store
        aad = normalize_aad(request.match_info["aad"])
        user = store.users.get(aad) if aad else None
        if user is None:
            raise web.HTTPNotFound(text="unknown user")
        newest = store.user_messages(user, newest_first=MESSAGES_SHOWN)
        inbox = f"/inbox/{quote(user.aad_object_id)}"
        items = "".join(render_message(m, number, inbox) for number, m in enumerate(newest)) or "<p>No messages yet.</p>"
        note = store.notes.pop(user.aad_object_id, None)
        shown = f'<p class="note">{escape(note)}</p>' if note else ""
        body = (
            '<p><a href="/">← all users</a></p>'
            f"<h1>{escape(user.name)}</h1>"
            f'<p class="meta">{escape(user.aad_object_id)} · {escape(user.user_id)} · '
            f"{len(user.messages)} messages</p>{shown}{items}"
        )
        return _page(f"Inbox of {user.name}", body)
