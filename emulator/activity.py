"""Microsoft Graph's activity feed, the part an urgent notice uses: ``POST
/graph/v1.0/teamwork/sendActivityNotificationToRecipients``, one notification to up to 100 people a call, which
pops up in their Teams activity feed with a sound and links to what it is about.

As Graph documents it: the application permission ``TeamsActivity.Send``; a token at least 45 minutes from its
expiry (412 ``PreconditionFailed`` otherwise); ``topic`` with ``source`` ``entityUrl`` (a resource Graph knows, such as
the app in the catalog) or ``text`` (with a ``webUrl`` to open); an ``activityType`` the app declares (the emulator
takes ``systemDefault``, whose ``templateParameters`` hold ``systemDefaultText``, and those in ``ACTIVITY_TYPES``);
``previewText.content``, of which Teams shows 150 characters; 1 to 100 ``recipients``, each
``{"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": GUID}``. It answers 202 with no body and
reports nothing per person: the notification reaches those who have the app, and nobody else. With the limits on,
beyond 2 calls a second in the tenant it answers 429 with a ``Retry-After``.

What reached each person is kept for the control API (``GET /_emulator/graph/activity?user=``) and the statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from .graph import GRAPH_AUDIENCE, Graph, graph_error
from .limits import SlidingLimiter, retry_after_header
from .responses import control_error, empty_response, json_response
from .state import normalize_aad

SEND = ("TeamsActivity.Send",)
ACTIVITY_TYPES = frozenset({"urgentAnnouncement"})  # besides systemDefault: what Crier's app package declares
MAX_RECIPIENTS = 100
PREVIEW_SHOWN = 150
TOKEN_LEFT_SECONDS = 45 * 60
WINDOWS: tuple[tuple[int, float], ...] = ((2, 1.0),)
RECIPIENT_TYPE = "microsoft.graph.aadUserNotificationRecipient"


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Feed:
    """The notifications that reached each person, and the counters."""

    by_user: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    limiter: SlidingLimiter = field(default_factory=lambda: SlidingLimiter(WINDOWS))
    calls: int = 0
    delivered: int = 0
    without_app: int = 0
    throttled: int = 0

    def reset(self) -> None:
        self.by_user.clear()
        self.limiter.clear()
        self.calls = self.delivered = self.without_app = self.throttled = 0

    def stats(self) -> dict[str, int]:
        return {"activity_calls": self.calls, "activity_delivered": self.delivered,
                "activity_without_app": self.without_app, "activity_throttled": self.throttled}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refused(400, "BadRequest", f"{name} is required.")
    return value


def notification(data: Any) -> tuple[dict[str, Any], list[str]]:
    """What the body asks to show, and the recipients' Entra object ids; ``Refused`` (400) naming what is wrong."""
    if not isinstance(data, dict):
        raise Refused(400, "BadRequest", "The body must be a JSON object.")
    topic = data.get("topic")
    if not isinstance(topic, dict) or topic.get("source") not in ("entityUrl", "text"):
        raise Refused(400, "BadRequest", "topic.source must be entityUrl or text.")
    value = _text(topic.get("value"), "topic.value")
    web_url = topic.get("webUrl")
    if topic["source"] == "text" and (not isinstance(web_url, str) or urlsplit(web_url).scheme != "https"):
        raise Refused(400, "BadRequest", "topic.webUrl (https) is required when topic.source is text.")
    activity_type = _text(data.get("activityType"), "activityType")
    parameters = data.get("templateParameters") or []
    if not isinstance(parameters, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str) for p in parameters):
        raise Refused(400, "BadRequest", "templateParameters must be a list of {name, value}.")
    named = {p["name"]: p["value"] for p in parameters}
    if activity_type == "systemDefault":
        _text(named.get("systemDefaultText"), "templateParameters systemDefaultText")
    elif activity_type not in ACTIVITY_TYPES:
        raise Refused(400, "BadRequest", f"The activity type '{activity_type}' is not declared in the app's manifest.")
    preview = data.get("previewText")
    content = _text(preview.get("content") if isinstance(preview, dict) else None, "previewText.content")
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise Refused(400, "BadRequest", f"recipients must hold 1 to {MAX_RECIPIENTS} recipients.")
    people = []
    for recipient in recipients:
        aad = normalize_aad(recipient.get("userId")) if isinstance(recipient, dict) else None
        if aad is None or str(recipient.get("@odata.type", "")).lstrip("#") != RECIPIENT_TYPE:
            raise Refused(400, "BadRequest", f"Each recipient must be a {RECIPIENT_TYPE} with a userId.")
        people.append(aad)
    shown = {"topic": {"source": topic["source"], "value": value, "webUrl": web_url}, "activityType": activity_type,
             "previewText": content[:PREVIEW_SHOWN], "templateParameters": named}
    return shown, list(dict.fromkeys(people))


class GraphActivity(Graph):
    def routes(self) -> list[web.RouteDef]:
        return [web.post("/graph/v1.0/teamwork/sendActivityNotificationToRecipients", self.send_to_recipients)]

    @property
    def feed(self) -> Feed:
        return self.ctx.feed

    def _token_left(self, request: web.Request) -> float:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        claims = jwt.decode(token, self.ctx.key.public_key, algorithms=["RS256"], audience=GRAPH_AUDIENCE)
        return float(claims["exp"]) - time.time()

    async def send_to_recipients(self, request: web.Request) -> web.Response:
        """Reads the body first: from there on nothing awaits, so the limit is judged atomically."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        feed = self.feed
        feed.calls += 1  # every call that reached it, refused or not
        if refusal := self._refusal(request, SEND):
            return refusal
        if self._token_left(request) < TOKEN_LEFT_SECONDS:
            return graph_error(412, "PreconditionFailed", "The token must be valid for at least 45 more minutes.")
        if self.ctx.config.limits:
            now, scope = time.monotonic(), self.ctx.settings.tenant_id
            wait = feed.limiter.wait_time(scope, now)
            if wait > 0:
                feed.throttled += 1
                return graph_error(429, "TooManyRequests", "Too many requests for this application in this tenant.",
                                   {"Retry-After": str(retry_after_header(wait))})
            feed.limiter.record(scope, now)
        try:
            shown, people = notification(data)
        except Refused as refused:
            return graph_error(refused.status, refused.code, refused.message)
        stamp = time.time()
        for aad in people:
            user = self.ctx.store.users.get(aad)
            if user is None or not user.installed or user.uninstalled:
                feed.without_app += 1  # Graph reports nothing: the notification reaches nobody there
                continue
            feed.by_user.setdefault(aad, []).append({**shown, "at": stamp})
            feed.delivered += 1
        return empty_response(202)


class ActivityControl:
    """``GET /_emulator/graph/activity?user=``: the notifications that reached a person, oldest first."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/_emulator/graph/activity", self.activity)]

    async def activity(self, request: web.Request) -> web.Response:
        aad = normalize_aad(request.query.get("user"))
        if aad is None:
            return control_error(400, "user (an Entra object id) is required")
        return json_response(200, {"notifications": self.ctx.feed.by_user.get(aad, [])})
