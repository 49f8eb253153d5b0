"""Sending activities to the bot's messaging endpoint, the way Teams does: the activity JSON, a Bot
Framework token signed with the emulator's key, and the ``x-ms-*`` headers."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import aiohttp

from .cards import EXECUTE, action_data
from .state import User, iso
from .tokens import CHANNEL_TOKEN_SECONDS, SigningKey, issue_channel_token

BOT_TIMEOUT_SECONDS = 15.0
BOT_NAME = "Crier"
# Calls to the bot open at the same time, at most: as many as a bulk engagement runs at once.
BOT_CONNECTIONS = 500
ADAPTIVE_CARD_ACTION = "adaptiveCard/action"
TRIGGERS = ("manual", "automatic")
# The channel keeps its token for the bot and puts it on every activity until this long before it expires, as the
# Bot Framework's own clients keep theirs: signing one per activity would cost more than the bot's work on many.
TOKEN_RENEW_BEFORE_SECONDS = 300

_activity_counter = itertools.count(1)


def _activity_id() -> str:
    """Ids like Teams' own for activities in personal chats: epoch milliseconds, made unique."""
    return f"{int(time.time() * 1000)}{next(_activity_counter) % 1000:03d}"


def base_activity(kind: str, user: User, conversation_id: str, service_url: str, app_id: str) -> dict[str, Any]:
    """The addressing every activity from Teams carries."""
    now = time.time()
    return {
        "type": kind,
        "id": _activity_id(),
        "timestamp": iso(now),
        "localTimestamp": iso(now),
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": user.user_id, "name": user.name, "aadObjectId": user.aad_object_id},
        "conversation": {"conversationType": "personal", "tenantId": user.tenant_id, "id": conversation_id},
        "recipient": {"id": f"28:{app_id}", "name": BOT_NAME},
        "entities": [{"locale": "en-US", "country": "US", "platform": "Web", "type": "clientInfo"}],
        "channelData": {"tenant": {"id": user.tenant_id}},
        "locale": "en-US",
    }


def install_activities(user: User, conversation_id: str, service_url: str, app_id: str) -> list[dict[str, Any]]:
    """A personal install: conversationUpdate (members added) then installationUpdate ``add``."""
    update = base_activity("conversationUpdate", user, conversation_id, service_url, app_id)
    update["membersAdded"] = [{"id": f"28:{app_id}"}, {"id": user.user_id, "aadObjectId": user.aad_object_id}]
    install = base_activity("installationUpdate", user, conversation_id, service_url, app_id)
    install["action"] = "add"
    return [update, install]


def uninstall_activity(user: User, conversation_id: str, service_url: str, app_id: str) -> dict[str, Any]:
    activity = base_activity("installationUpdate", user, conversation_id, service_url, app_id)
    activity["action"] = "remove"
    return activity


def message_activity(
    user: User, conversation_id: str, service_url: str, app_id: str, text: str | None, value: Any | None
) -> dict[str, Any]:
    """What the user typed (``text``), or an Adaptive Card Action.Submit (``value``: the card's data)."""
    activity = base_activity("message", user, conversation_id, service_url, app_id)
    if text is not None:
        activity["text"] = text
        activity["textFormat"] = "plain"
    if value is not None:
        activity["value"] = value
        activity["channelData"]["postBack"] = True
    return activity


READ_RECEIPT = "application/vnd.microsoft.readReceipt"


def read_receipt_activity(user: User, conversation_id: str, service_url: str, app_id: str,
                          last_read: str) -> dict[str, Any]:
    """The user read the bot's messages up to ``last_read`` (an activity id) in their one-to-one chat."""
    activity = base_activity("event", user, conversation_id, service_url, app_id)
    activity["name"] = READ_RECEIPT
    activity["value"] = {"lastReadMessageId": last_read}
    return activity


def reaction_activity(user: User, conversation_id: str, service_url: str, app_id: str, reply_to_id: str,
                      kind: str, *, removed: bool) -> dict[str, Any]:
    """The user reacts to the bot's message ``reply_to_id`` (or takes the reaction back)."""
    activity = base_activity("messageReaction", user, conversation_id, service_url, app_id)
    activity["replyToId"] = reply_to_id
    activity["reactionsRemoved" if removed else "reactionsAdded"] = [{"type": kind}]
    return activity


def invoke_activity(user: User, conversation_id: str, service_url: str, app_id: str, reply_to_id: str,
                    action: dict[str, Any], *, trigger: str = "manual",
                    inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The person pressed the ``Action.Execute`` ``action`` of the card of the bot's message ``reply_to_id``
    (``trigger`` "manual"), or Teams showed a card whose ``refresh.action`` it is ("automatic"): Teams' invoke
    ``adaptiveCard/action``, whose ``data`` is the action's data with the card's ``inputs`` merged in. The bot
    answers in the HTTP response itself."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, not {trigger!r}")
    activity = base_activity("invoke", user, conversation_id, service_url, app_id)
    activity["name"] = ADAPTIVE_CARD_ACTION
    activity["replyToId"] = reply_to_id
    executed: dict[str, Any] = {"type": EXECUTE}
    if isinstance(action.get("id"), str) and action["id"]:
        executed["id"] = action["id"]
    if isinstance(action.get("verb"), str):
        executed["verb"] = action["verb"]
    executed["data"] = action_data(action, inputs)
    activity["value"] = {"action": executed, "trigger": trigger}
    return activity


class BotClient:
    """One aiohttp session for every call to the bot (created on the running loop)."""

    def __init__(self, key: SigningKey, app_id: str) -> None:
        self._key = key
        self._app_id = app_id
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # service URL -> (token, when to sign a new one)

    def token(self, service_url: str) -> str:
        """The channel's token for activities naming ``service_url``: kept and reused until it nears its expiry."""
        kept = self._tokens.get(service_url)
        now = time.time()
        if kept is not None and now < kept[1]:
            return kept[0]
        token = issue_channel_token(self._key, app_id=self._app_id, service_url=service_url)
        if len(self._tokens) >= 100:  # service URLs are few: the emulator's own, and a test's
            self._tokens.clear()
        self._tokens[service_url] = (token, now + CHANNEL_TOKEN_SECONDS - TOKEN_RENEW_BEFORE_SECONDS)
        return token

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOT_TIMEOUT_SECONDS),
                                                  connector=aiohttp.TCPConnector(limit=BOT_CONNECTIONS))
        return self._session

    async def post(self, endpoint: str, activity: dict[str, Any]) -> tuple[int | str, Any]:
        """POSTs one activity. Returns (HTTP status, body: parsed JSON, text or None), or
        (error text, None) when the bot could not be reached."""
        token = self.token(activity["serviceUrl"])
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
            "x-ms-tenant-id": activity["conversation"]["tenantId"],
            "x-ms-conversation-id": activity["conversation"]["id"],
        }
        try:
            async with self._get_session().post(endpoint, data=json.dumps(activity), headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}".strip(": "), None
        if not text:
            return status, None
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text
