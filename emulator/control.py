"""The control API under ``/_emulator/``: JSON, no auth (the emulator listens on loopback).

Tests and the demo use it to register users, play what users do in Teams (install, uninstall, block,
delete the chat, type a message, read, react, press a card's ``Action.Execute``, many people at once with
``engage``), change the configuration, and read what the bot sent.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from aiohttp import web

from .bot_client import (
    install_activities, message_activity, reaction_activity, read_receipt_activity, uninstall_activity,
)
from .config import ConfigError
from .context import Context
from .invokes import DEFAULT_CONCURRENCY, InvokeResult, Invoker
from .responses import control_error, json_body, json_response
from .state import User, normalize_aad

logger = logging.getLogger("emulator")

DEFAULT_MESSAGE_LIMIT = 10_000
MAX_MESSAGE_LIMIT = 1_000_000


def parse_since(value: str) -> float:
    """Epoch seconds, or an ISO 8601 time (a time without an offset is UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    text = value.strip()
    if "T" in text and " " in text:  # a '+' offset that arrived unencoded in a query string
        text = text.replace(" ", "+")
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _optional_bool(entry: dict[str, Any], key: str, index: int) -> bool | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"users[{index}].{key} must be true or false")
    return value


class Control:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.invoker = Invoker(ctx)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_emulator/health", self.health),
            web.post("/_emulator/reset", self.reset),
            web.get("/_emulator/config", self.get_config),
            web.post("/_emulator/config", self.set_config),
            web.get("/_emulator/users", self.list_users),
            web.post("/_emulator/users", self.register_users),
            web.get("/_emulator/users/{aad}", self.get_user),
            web.post("/_emulator/users/{aad}/{action}", self.user_action),
            web.post("/_emulator/engage", self.engage),
            web.get("/_emulator/messages", self.messages),
            web.get("/_emulator/stats", self.stats),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return json_response(200, {"ok": True})

    async def reset(self, request: web.Request) -> web.Response:
        self.ctx.reset()
        return json_response(200, {"ok": True})

    async def get_config(self, request: web.Request) -> web.Response:
        return json_response(200, self.ctx.config.as_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            changed = self.ctx.config.merge(await json_body(request))
        except ConfigError as exc:
            return control_error(400, str(exc))
        if "seed" in changed:
            self.ctx.faults.reseed(self.ctx.config.seed)
        if changed:
            logger.info("config changed: %s", ", ".join(sorted(changed)))
        return json_response(200, self.ctx.config.as_dict())

    # Users -------------------------------------------------------------------------------------

    async def register_users(self, request: web.Request) -> web.Response:
        """Bulk registration; every entry is validated before any is stored."""
        try:
            data = await json_body(request)
            if not isinstance(data, dict) or not isinstance(data.get("users"), list):
                raise ConfigError('the body must be {"users": [...]}')
            entries = []
            for index, entry in enumerate(data["users"]):
                if not isinstance(entry, dict):
                    raise ConfigError(f"users[{index}] must be an object")
                aad = normalize_aad(entry.get("aad_object_id"))
                if aad is None:
                    raise ConfigError(f"users[{index}].aad_object_id must be a GUID")
                name = entry.get("name")
                if name is not None and not isinstance(name, str):
                    raise ConfigError(f"users[{index}].name must be a string")
                tenant = entry.get("tenant_id") or self.ctx.settings.tenant_id
                if not isinstance(tenant, str):
                    raise ConfigError(f"users[{index}].tenant_id must be a string")
                installed = _optional_bool(entry, "installed", index)
                blocked = _optional_bool(entry, "blocked", index)
                entries.append((aad, name, tenant.strip().lower(), installed, blocked))
        except ConfigError as exc:
            return control_error(400, str(exc))
        store = self.ctx.store
        users = [
            store.upsert_user(aad, name=name, tenant_id=tenant, installed=installed, blocked=blocked)
            for aad, name, tenant, installed, blocked in entries
        ]
        return json_response(200, {"users": [user.as_dict() for user in users]})

    async def list_users(self, request: web.Request) -> web.Response:
        return json_response(200, {"users": [user.as_dict() for user in self.ctx.store.users.values()]})

    def _user(self, request: web.Request) -> User | None:
        aad = normalize_aad(request.match_info["aad"])
        return self.ctx.store.users.get(aad) if aad else None

    async def get_user(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if user is None:
            return control_error(404, f"unknown user {request.match_info['aad']!r}")
        data = user.as_dict()
        store = self.ctx.store
        data["messages"] = [store.message_dict(message) for message in store.user_messages(user)]
        return json_response(200, data)

    async def user_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        handler = {
            "install": self._install,
            "uninstall": self._uninstall,
            "block": self._block,
            "unblock": self._unblock,
            "delete-chat": self._delete_chat,
            "say": self._say,
            "read": self._read,
            "react": self._react,
            "execute": self._execute,
            "refresh": self._refresh,
        }.get(action)
        if handler is None:
            return control_error(404, f"unknown action {action!r}")
        user = self._user(request)
        if user is None and action == "install":
            aad = normalize_aad(request.match_info["aad"])
            if aad is None:
                return control_error(400, "the user's aad object id must be a GUID")
            user = self.ctx.store.upsert_user(aad, tenant_id=self.ctx.settings.tenant_id)
        if user is None:
            return control_error(404, f"unknown user {request.match_info['aad']!r}")
        try:
            return await handler(user, request)
        except ConfigError as exc:
            return control_error(400, str(exc))

    async def _post_to_bot(self, activities: list[dict[str, Any]]) -> list[tuple[int | str, Any]]:
        """Sends activities one after the other, as Teams does; the bot's answers in order."""
        answers = []
        for activity in activities:
            answers.append(await self.ctx.bot.post(self.ctx.config.bot_endpoint, activity))
        return answers

    async def _install(self, user: User, request: web.Request) -> web.Response:
        ctx = self.ctx
        user.installed, user.uninstalled = True, False
        conversation_id = ctx.store.conversation_for(user)
        activities = install_activities(user, conversation_id, ctx.service_url, ctx.settings.app_id)
        answers = await self._post_to_bot(activities)
        return json_response(
            200,
            {
                "user_id": user.user_id,
                "conversation_id": conversation_id,
                "service_url": ctx.service_url,
                "bot_status": [status for status, _ in answers],
            },
        )

    async def _uninstall(self, user: User, request: web.Request) -> web.Response:
        ctx = self.ctx
        user.installed, user.uninstalled = False, True
        conversation_id = ctx.store.conversation_for(user)
        answers = await self._post_to_bot(
            [uninstall_activity(user, conversation_id, ctx.service_url, ctx.settings.app_id)]
        )
        return json_response(200, {"user": user.as_dict(), "bot_status": [status for status, _ in answers]})

    async def _block(self, user: User, request: web.Request) -> web.Response:
        user.blocked = True
        return json_response(200, {"user": user.as_dict()})

    async def _unblock(self, user: User, request: web.Request) -> web.Response:
        user.blocked = False
        return json_response(200, {"user": user.as_dict()})

    async def _delete_chat(self, user: User, request: web.Request) -> web.Response:
        self.ctx.store.delete_chat(user)
        return json_response(200, {"user": user.as_dict()})

    async def _say(self, user: User, request: web.Request) -> web.Response:
        """The user types ``text`` or submits a card (``value``) in the bot's chat."""
        ctx = self.ctx
        data = await json_body(request)
        if not isinstance(data, dict):
            raise ConfigError('the body must be {"text": ...} or {"value": {...}}')
        text, value = data.get("text"), data.get("value")
        if text is not None and not isinstance(text, str):
            raise ConfigError("text must be a string")
        if text is None and value is None:
            raise ConfigError("give text or value")
        conversation_id = ctx.store.conversation_for(user)
        activity = message_activity(user, conversation_id, ctx.service_url, ctx.settings.app_id, text, value)
        [(status, body)] = await self._post_to_bot([activity])
        return json_response(200, {"bot_status": status, "bot_body": body, "activity": activity})

    async def _read(self, user: User, request: web.Request) -> web.Response:
        """The user reads the bot's messages in their chat, up to ``activity_id`` (the latest by default): Teams
        sends the bot a read receipt, as it does when a person opens the chat."""
        ctx = self.ctx
        data = await json_body(request) if request.can_read_body else {}
        if not isinstance(data, dict):
            raise ConfigError('the body must be {} or {"activity_id": ...}')
        last_read = self._latest_or(user, data.get("activity_id"))
        conversation_id = ctx.store.conversation_for(user)
        activity = read_receipt_activity(user, conversation_id, ctx.service_url, ctx.settings.app_id, last_read)
        [(status, _)] = await self._post_to_bot([activity])
        ctx.store.read_receipts += 1
        return json_response(200, {"bot_status": status, "last_read": last_read})

    def _latest_or(self, user: User, given: Any) -> str:
        if given is None:
            if not user.messages:
                raise ConfigError("the bot has sent this user nothing")
            return self.ctx.store.log.activity_id(user.messages[-1])
        if not isinstance(given, str) or not given.isdigit():
            raise ConfigError("activity_id must be the id of one of the bot's messages (digits)")
        return given

    async def _react(self, user: User, request: web.Request) -> web.Response:
        """The user reacts to one of the bot's messages (the latest by default): ``{"type": "like"}``, or takes a
        reaction back (``"removed": true``)."""
        ctx = self.ctx
        data = await json_body(request)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not data["type"]:
            raise ConfigError('the body must be {"type": "like", "activity_id"?: ..., "removed"?: bool}')
        reply_to = self._latest_or(user, data.get("activity_id"))
        activity = reaction_activity(user, ctx.store.conversation_for(user), ctx.service_url, ctx.settings.app_id,
                                     reply_to, data["type"], removed=bool(data.get("removed")))
        [(status, _)] = await self._post_to_bot([activity])
        return json_response(200, {"bot_status": status, "reply_to_id": reply_to})

    async def _execute(self, user: User, request: web.Request) -> web.Response:
        """The user presses an ``Action.Execute`` of the card of one of the bot's messages (the latest by default):
        ``{"action"?: id or title (the first by default), "inputs"?: {input id: value}}``. Teams' invoke
        ``adaptiveCard/action`` goes to the bot; a card it answers takes the place of the message's card."""
        data = await json_body(request)
        if not isinstance(data, dict):
            raise ConfigError('the body must be {"activity_id"?: ..., "action"?: ..., "inputs"?: {...}}')
        selector, inputs = data.get("action"), data.get("inputs")
        if selector is not None and (not isinstance(selector, str) or not selector):
            raise ConfigError("action must be the id or the title of one of the card's Action.Execute")
        if inputs is not None and not isinstance(inputs, dict):
            raise ConfigError("inputs must be an object: {input id: value}")
        seq = self.invoker.target(user, data.get("activity_id"))
        return self._invoked(await self.invoker.execute(user, seq, selector, inputs), seq)

    async def _refresh(self, user: User, request: web.Request) -> web.Response:
        """Teams shows the card of one of the bot's messages (the latest by default) and, as the card has a
        ``refresh``, sends its action as an invoke with the trigger ``automatic``."""
        data = await json_body(request) if request.can_read_body else {}
        if not isinstance(data, dict):
            raise ConfigError('the body must be {} or {"activity_id": ...}')
        seq = self.invoker.target(user, data.get("activity_id"))
        return self._invoked(await self.invoker.refresh(user, seq), seq)

    def _invoked(self, result: InvokeResult, seq: int) -> web.Response:
        return json_response(200, {
            "bot_status": result.status, "answer": result.answer, "card": result.card, "outcome": result.outcome,
            "activity_id": self.ctx.store.log.activity_id(seq), "invoke": result.activity,
        })

    async def engage(self, request: web.Request) -> web.Response:
        """Many people act on their latest message at once, for a benchmark: ``{"users": [ids] | "all", "read":
        bool, "execute": id or title | null, "react": kind | null, "concurrency": 50}``."""
        try:
            data = await json_body(request)
            if not isinstance(data, dict):
                raise ConfigError('the body must be {"users": [...] | "all", "read"?, "execute"?, "react"?, '
                                  '"concurrency"?}')
            unknown = set(data) - {"users", "read", "execute", "react", "concurrency"}
            if unknown:
                raise ConfigError(f"unknown fields: {', '.join(sorted(unknown))}")
            read = data.get("read", False)
            if not isinstance(read, bool):
                raise ConfigError("read must be true or false")
            for key in ("execute", "react"):
                if data.get(key) is not None and (not isinstance(data[key], str) or not data[key]):
                    raise ConfigError(f"{key} must be a non-empty string or null")
            concurrency = data.get("concurrency", DEFAULT_CONCURRENCY)
            if isinstance(concurrency, bool) or not isinstance(concurrency, int):
                raise ConfigError("concurrency must be an integer")
            users = self.invoker.engaged_users(data.get("users"))
        except ConfigError as exc:
            return control_error(400, str(exc))
        report = await self.invoker.engage(users, read=read, execute=data.get("execute"), react=data.get("react"),
                                           concurrency=concurrency)
        logger.info("engaged %d users in %.1f s", report["users"], report["seconds"])
        return json_response(200, report)

    # Messages and stats ------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.Response:
        store = self.ctx.store
        query = request.query
        user = None
        if query.get("user"):
            aad = normalize_aad(query["user"])
            user = store.users.get(aad) if aad else None
            if user is None:
                return json_response(200, {"messages": []})
        try:
            since = parse_since(query["since"]) if query.get("since") else None
            limit = int(query.get("limit") or DEFAULT_MESSAGE_LIMIT)
        except ValueError as exc:
            return control_error(400, f"bad since or limit: {exc}")
        limit = max(0, min(limit, MAX_MESSAGE_LIMIT))
        found = store.query_messages(user, since, limit)
        return json_response(200, {"messages": [store.message_dict(message) for message in found]})

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(200, self.ctx.store.stats(self.ctx.faults.counts))
