"""The Bot Connector routes, under any region prefix (``/teams/``, ``/emea/``, ...):
create a one-to-one conversation, send (or reply), update and delete messages, and page a team's members.
A one-to-one chat answers to its conversation id and, once Graph gave it, to Graph's id for it
(``19:...@unq.gbl.spaces``): the same person, checks, limits and messages.

Each handler reads the body first and then runs to its answer without awaiting anything, so the
rate-limit checks and the recording of a call happen atomically on the event loop. Order of checks:
auth (401), a bot the tenant admin disabled (403), global limit (429), injected fault, validation and
lookups (413/404/403/400), per-thread or per-user limit (429), then the work.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Hashable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .context import Context
from .faults import FAULT_ERRORS
from .limits import SENT_AT_HEADER, made_at, retry_after_header
from .responses import (
    bad_argument,
    blocked_by_user,
    bot_disabled_by_admin,
    conversation_not_found,
    empty_response,
    json_response,
    message_writes_blocked,
    not_installed,
    retry_after_date,
    teams_error,
    throttled,
    unauthorized,
)
from .state import User, aad_from_user_id, normalize_aad
from .teams import roster_page

MAX_ACTIVITY_BYTES = 102_400
CREATE_PATH = "/{region}/v3/conversations"
CONVERSATION_PATH = "/{region}/v3/conversations/{rest:.+}"


def _tenant_of(body: dict[str, Any]) -> str | None:
    """``tenantId`` (any capitalisation, as .NET binds it), else ``channelData.tenant.id``."""
    for key, value in body.items():
        if key.lower() == "tenantid" and isinstance(value, str) and value.strip():
            return value.strip().lower()
    channel_data = body.get("channelData")
    if isinstance(channel_data, dict):
        tenant = channel_data.get("tenant")
        if isinstance(tenant, dict) and isinstance(tenant.get("id"), str) and tenant["id"].strip():
            return tenant["id"].strip().lower()
    return None


def _parse_json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _check_message(activity: dict[str, Any] | None) -> str | None:
    """Why this is not a sendable message activity, or None."""
    if activity is None:
        return "The request body is not a JSON object."
    if activity.get("type") != "message":
        return f"Unsupported activity type {activity.get('type')!r}: only 'message' can be sent."
    text = activity.get("text")
    attachments = activity.get("attachments")
    if text is not None and not isinstance(text, str):
        return "'text' must be a string."
    if attachments is not None and not isinstance(attachments, list):
        return "'attachments' must be an array."
    if not text and not attachments:
        return "The activity has neither text nor attachments."
    return None


class Connector:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(CREATE_PATH, self.create_conversation),
            web.route("*", CONVERSATION_PATH, self.conversation_call),
        ]

    # Shared steps ------------------------------------------------------------------------------

    async def _read(self, request: web.Request) -> bytes | None:
        """The raw body, or None when it is bigger than the app accepts (answered as too big)."""
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    def _global_limit(self, app_scope: Hashable, now: float, made: float | None = None) -> web.Response | None:
        """50 calls per second per app per tenant, across every connector call, judged by arrival as
        Teams does; a refusal is also counted apart (``app_throttled_when_made``) when the calls were over the
        limit by the moments their caller made them, not only by the moments they arrived."""
        ctx = self.ctx
        if not ctx.config.limits:
            return None
        made = now if made is None else made
        wait = ctx.global_limiter.wait_time(app_scope, now)
        if wait > 0:
            ctx.store.throttled["app"] += 1
            if ctx.global_made.over(app_scope, made):
                ctx.store.app_throttled_when_made += 1
            retry = retry_after_header(wait)
            ctx.store.retry_after.told_to_wait(app_scope, now + retry, now)
            return throttled(retry, "Too many requests for this application in this tenant.")
        ctx.global_limiter.record(app_scope, now)
        ctx.global_made.record(app_scope, made)
        return None

    async def _fault(self, app_scope: Hashable, now: float) -> web.Response | None:
        """An injected failure for this call, if the dice say so (after waiting, for a timeout)."""
        ctx = self.ctx
        kind = ctx.faults.draw(ctx.config.faults)
        if kind is None:
            return None
        status, code, message = FAULT_ERRORS[kind]
        if kind == "timeout":
            await asyncio.sleep(ctx.config.faults.timeout_seconds)
            return teams_error(status, code, message)
        if kind == "status_429":
            seconds = ctx.config.faults.retry_after_seconds
            ctx.store.retry_after.told_to_wait(app_scope, now + seconds, now)
            header = retry_after_date(seconds) if ctx.config.faults.retry_after_http_date else str(math.ceil(seconds))
            return teams_error(status, code, message, {"Retry-After": header})
        return teams_error(status, code, message)

    # POST /{region}/v3/conversations -----------------------------------------------------------

    async def create_conversation(self, request: web.Request) -> web.Response:
        ctx = self.ctx
        store = ctx.store
        store.requests += 1
        authorization = request.headers.get("Authorization")
        new_token = not ctx.tokens.known(authorization)
        if not ctx.tokens.check(authorization):
            return unauthorized()
        if ctx.config.bot_disabled:
            return bot_disabled_by_admin()
        raw = await self._read(request)
        body = _parse_json(raw) if raw is not None else None
        tenant = _tenant_of(body) if body is not None else None
        members = body.get("members") if body is not None else None
        member: Any = members[0] if isinstance(members, list) and len(members) == 1 else None
        member_id = member.get("id") if isinstance(member, dict) else None
        member_aad = None
        if isinstance(member_id, str):
            member_aad = aad_from_user_id(member_id) if member_id.startswith("29:") else normalize_aad(member_id)

        now = time.monotonic()
        app_scope = ("app", tenant or ctx.settings.tenant_id)
        user_scope = ("user", member_aad or member_id)
        store.retry_after.note_call(
            (app_scope, user_scope), now, made=(made := made_at(request.headers.get(SENT_AT_HEADER), now)),
            new_token=new_token,
        )
        refused = self._global_limit(app_scope, now, made) or await self._fault(app_scope, now)
        if refused is not None:
            return refused

        if raw is None or len(raw) > MAX_ACTIVITY_BYTES:
            return teams_error(413, "MessageSizeTooBig", "The request body is too large.")
        if body is None:
            return bad_argument("The request body is not a JSON object.")
        if not isinstance(members, list) or len(members) != 1:
            return bad_argument("A one-to-one conversation needs exactly one member.")
        if not isinstance(member_id, str) or not member_id:
            return bad_argument("The member has no id.")
        if "aadObjectId" in member:
            return bad_argument("Invalid member: use members[].id for the user's id, not aadObjectId.")
        if tenant is None:
            return bad_argument("Tenant id is required")
        if member_aad is None:
            return bad_argument("Invalid user identity in provided tenant.")

        user = store.find_user(member_id) or store.users.get(member_aad)
        if user is None:
            if not ctx.config.auto_install:
                return not_installed()
            user = store.upsert_user(member_aad, tenant_id=tenant, installed=True)
        if user.tenant_id != tenant:
            return bad_argument("Invalid user identity in provided tenant.")
        if user.uninstalled:
            return not_installed()
        if not user.installed:
            # A bot installed in a team may open a chat with a member who never installed it, by the
            # member's 29: id (which it learnt from the team's roster), not by the Entra object id.
            if not (member_id.startswith("29:") and store.in_team_with_the_bot(user.aad_object_id)):
                return not_installed()
            user.via_team = True

        if ctx.config.limits:
            wait = ctx.create_limiter.wait_time(user.aad_object_id, now)
            if wait > 0:
                store.throttled["create"] += 1
                retry = retry_after_header(wait)
                store.retry_after.told_to_wait(user_scope, now + retry, now)
                return throttled(retry, "Too many conversations created for this user.")
            ctx.create_limiter.record(user.aad_object_id, now)
        return json_response(201, {"id": store.conversation_for(user)})

    # /{region}/v3/conversations/{conversationId}/activities[/{activityId}] --------------------

    async def conversation_call(self, request: web.Request) -> web.Response:
        ctx = self.ctx
        ctx.store.requests += 1
        authorization = request.headers.get("Authorization")
        new_token = not ctx.tokens.known(authorization)
        if not ctx.tokens.check(authorization):
            return unauthorized()
        if ctx.config.bot_disabled:
            return bot_disabled_by_admin()
        # Parse the raw path: the conversation id is URL-encoded and may hold ':', ';', '@' or '%2F'.
        region, _, rest = request.rel_url.raw_path[1:].partition("/v3/conversations/")
        parts = rest.split("/")
        if "/" not in region and len(parts) == 2 and parts[1] == "pagedmembers" and parts[0]:
            if request.method != "GET":
                return teams_error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return await self._paged_members(request, unquote(parts[0]), new_token)
        if "/" in region or len(parts) not in (2, 3) or parts[1] != "activities" or not parts[0]:
            return teams_error(404, "NotFound", "No such Bot Connector operation in this emulator.")
        conversation_id = unquote(parts[0])
        if len(parts) == 2 or not parts[2]:
            if request.method != "POST":
                return teams_error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return await self._send(request, conversation_id, new_token)
        activity_id = unquote(parts[2])
        if request.method == "POST":
            # ReplyToActivity: in a one-to-one chat, a send like any other.
            return await self._send(request, conversation_id, new_token)
        if request.method == "PUT":
            return await self._update(request, conversation_id, activity_id)
        if request.method == "DELETE":
            return await self._delete(conversation_id, activity_id)
        return teams_error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    async def _paged_members(self, request: web.Request, team_id: str, new_token: bool) -> web.Response:
        """``GET .../v3/conversations/{teamId}/pagedmembers``: the team's roster (``teams.roster_page``),
        counted against the app's limit like every connector call."""
        now = time.monotonic()
        app_scope = ("app", self.ctx.settings.tenant_id)
        self.ctx.store.retry_after.note_call(
            (app_scope,), now, made=(made := made_at(request.headers.get(SENT_AT_HEADER), now)), new_token=new_token
        )
        refused = self._global_limit(app_scope, now, made) or await self._fault(app_scope, now)
        if refused is not None:
            return refused
        return roster_page(self.ctx, team_id, request.query)

    async def _send(self, request: web.Request, conversation_id: str, new_token: bool) -> web.Response:
        ctx = self.ctx
        store = ctx.store
        raw = await self._read(request)
        user: User | None = store.conversations.get(conversation_id)
        now = time.monotonic()
        app_scope = ("app", user.tenant_id if user else ctx.settings.tenant_id)
        thread = store.thread_of(conversation_id)  # Graph's chat id and the conversation id are one thread
        thread_scope = ("conversation", thread)
        store.retry_after.note_call(
            (app_scope, thread_scope), now, made=(made := made_at(request.headers.get(SENT_AT_HEADER), now)),
            new_token=new_token,
        )
        refused = self._global_limit(app_scope, now, made) or await self._fault(app_scope, now)
        if refused is not None:
            return refused

        if raw is None or len(raw) > MAX_ACTIVITY_BYTES:
            return teams_error(413, "MessageSizeTooBig", f"The activity is larger than {MAX_ACTIVITY_BYTES} bytes.")
        # Look the conversation up again: an injected timeout may have let a delete-chat happen.
        user = store.conversations.get(conversation_id)
        if user is None:
            return conversation_not_found()
        thread = store.thread_of(conversation_id)
        if user.blocked:
            return blocked_by_user()
        if user.uninstalled:
            return message_writes_blocked()
        if not (user.installed or self._reachable_through_team(user)):
            # Reached through a team the bot has left, or the person left: not an opt-out, just no way in.
            return not_installed()
        activity = _parse_json(raw)
        problem = _check_message(activity)
        if problem is not None or activity is None:
            return bad_argument(problem or "Bad activity.")

        if ctx.config.limits:
            wait = ctx.thread_limiter.wait_time(thread, now)
            if wait > 0:
                store.throttled["conversation"] += 1
                retry = retry_after_header(wait)
                store.retry_after.told_to_wait(thread_scope, now + retry, now)
                return throttled(retry, "Too many messages sent to this conversation.")
            ctx.thread_limiter.record(thread, now)
        return json_response(201, {"id": store.record(user, activity, ctx.config.keep_bodies)})

    def _reachable_through_team(self, user: User) -> bool:
        return user.via_team and self.ctx.store.in_team_with_the_bot(user.aad_object_id)

    async def _find_sent(self, conversation_id: str, activity_id: str) -> tuple[int | None, web.Response | None]:
        """What update and delete share: the app's limit and the injected faults, then the message (or
        the answer to give)."""
        ctx = self.ctx
        user = ctx.store.conversations.get(conversation_id)
        now = time.monotonic()
        app_scope = ("app", user.tenant_id if user else ctx.settings.tenant_id)
        ctx.store.retry_after.note_call((app_scope,), now)
        refused = self._global_limit(app_scope, now) or await self._fault(app_scope, now)
        if refused is not None:
            return None, refused
        if user is None:
            return None, conversation_not_found()
        seq = ctx.store.find_message(conversation_id, activity_id)
        if seq is None:
            return None, teams_error(404, "NotFound", "Activity not found.")
        return seq, None

    async def _update(self, request: web.Request, conversation_id: str, activity_id: str) -> web.Response:
        raw = await self._read(request)
        seq, answer = await self._find_sent(conversation_id, activity_id)
        if answer is not None:
            return answer
        if raw is None or len(raw) > MAX_ACTIVITY_BYTES:
            return teams_error(413, "MessageSizeTooBig", f"The activity is larger than {MAX_ACTIVITY_BYTES} bytes.")
        activity = _parse_json(raw)
        problem = _check_message(activity)
        if problem is not None or activity is None:
            return bad_argument(problem or "Bad activity.")
        self.ctx.store.update_message(seq, activity, self.ctx.config.keep_bodies)
        return json_response(200, {"id": activity_id})

    async def _delete(self, conversation_id: str, activity_id: str) -> web.Response:
        seq, answer = await self._find_sent(conversation_id, activity_id)
        if answer is not None:
            return answer
        self.ctx.store.delete_message(seq)
        return empty_response(200)
