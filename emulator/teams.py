"""Teams' teams: the bot installed in a team, and the team's roster as the Bot Connector pages it.

A team (``Team``, in the store) has an id like Teams' own (``19:...@thread.tacv2``, also its General
channel's), a name, the id of its Microsoft 365 group, and its members (Entra object ids). Installing or
removing the bot, or renaming the team, posts to the bot the ``conversationUpdate`` Teams sends for it
(``channelData.eventType`` ``teamMemberAdded``, ``teamMemberRemoved``, ``teamRenamed``). While the bot is
in a team, ``GET {serviceUrl}/v3/conversations/{team id}/pagedmembers`` pages the members (the connector
calls ``roster_page``), and the bot may open a one-to-one chat with a member by the member's ``29:`` id,
though the member never installed the bot.

The control API: ``POST /_emulator/teams`` (create or replace), ``GET /_emulator/teams``, and
``POST /_emulator/teams/{id}/members|install|uninstall|rename``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import uuid
from typing import Any

from aiohttp import web

from .bot_client import base_activity
from .config import ConfigError
from .context import Context
from .groups import display_name, guid_list
from .responses import bad_argument, control_error, json_body, json_response, teams_error
from .state import Team, User, normalize_aad

DEFAULT_PAGE_SIZE = 200
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500  # Teams raises a smaller pageSize to 50 and lowers a bigger one to 500
TEAM_ID = re.compile(r"19:[^\s/?#%]+@thread\.tacv2")
SYNTHETIC_DOMAIN = "emulator.test"


def not_in_roster() -> web.Response:
    return teams_error(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")


def _token(team_id: str, offset: int) -> str:
    raw = json.dumps({"t": team_id, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(token: str, team_id: str) -> int | None:
    """The position a continuation token stands for, or None if it is not one this team's roster gave."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(state, dict) or state.get("t") != team_id:
        return None
    offset = state.get("o")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else None


def _member(ctx: Context, aad: str) -> dict[str, Any]:
    """A ``TeamsChannelAccount``: names and addresses from the directory when it knows the person."""
    user = ctx.store.users[aad]
    entry = ctx.directory.users.get(aad)
    known = entry.properties if entry is not None and entry.deleted_at is None else {}
    synthetic = f"{aad.replace('-', '')[:8]}@{SYNTHETIC_DOMAIN}"
    return {
        "id": user.user_id,
        "name": known.get("displayName") or user.name,
        "aadObjectId": aad,
        "email": known.get("mail") or synthetic,
        "userPrincipalName": known.get("userPrincipalName") or synthetic,
        "givenName": known.get("givenName"),
        "surname": known.get("surname"),
        "tenantId": user.tenant_id,
        "userRole": "user",
    }


def roster_page(ctx: Context, team_id: str, query: Any) -> web.Response:
    """``GetPagedMembers``: ``pageSize`` (200 unless given, kept within 50..500) members from where the
    ``continuationToken`` left off; the last page has no token."""
    team = ctx.store.teams.get(team_id)
    if team is None or not team.bot_installed:
        return not_in_roster()
    size_text = query.get("pageSize")
    if size_text is None or not size_text.strip():
        size = DEFAULT_PAGE_SIZE
    else:
        try:
            size = min(max(int(size_text), MIN_PAGE_SIZE), MAX_PAGE_SIZE)
        except ValueError:
            return bad_argument(f"Invalid pageSize '{size_text}'.")
    offset = 0
    if query.get("continuationToken"):
        found = _offset(query["continuationToken"], team_id)
        if found is None:
            return bad_argument("Invalid continuation token.")
        offset = found
    members = list(team.members)
    body: dict[str, Any] = {"members": [_member(ctx, aad) for aad in members[offset:offset + size]]}
    if offset + size < len(members):
        body["continuationToken"] = _token(team_id, offset + size)
    return json_response(200, body)


def team_activity(ctx: Context, team: Team, by: User, event: str) -> dict[str, Any]:
    """The ``conversationUpdate`` Teams posts for ``event`` in the team, made by ``by``."""
    activity = base_activity("conversationUpdate", by, team.id, ctx.service_url, ctx.settings.app_id)
    activity["conversation"] = {"conversationType": "channel", "tenantId": by.tenant_id, "id": team.id,
                                "isGroup": True}
    activity["channelData"] = {"eventType": event,
                               "team": {"id": team.id, "name": team.name, "aadGroupId": team.aad_group_id},
                               "tenant": {"id": by.tenant_id}}
    if event == "teamMemberAdded":
        activity["membersAdded"] = [{"id": f"28:{ctx.settings.app_id}"}]
        activity["channelData"]["settings"] = {"selectedChannel": {"id": team.id}}
    elif event == "teamMemberRemoved":
        activity["membersRemoved"] = [{"id": f"28:{ctx.settings.app_id}"}]
    return activity


class TeamsControl:
    """``/_emulator/teams...``: make teams, change their members, and play installing, removing the bot and
    renaming the team."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_emulator/teams", self.list_teams),
            web.post("/_emulator/teams", self.create_team),
            web.post("/_emulator/teams/{id}/{action}", self.team_action),
        ]

    def _add_members(self, team: Team, members: list[str]) -> None:
        """Members the store does not know become Teams users who never installed the bot themselves."""
        store, directory = self.ctx.store, self.ctx.directory
        for aad in members:
            if aad not in store.users:
                entry = directory.users.get(aad)
                name = entry.properties.get("displayName") if entry is not None and entry.deleted_at is None else None
                store.upsert_user(aad, name=name if isinstance(name, str) else None,
                                  tenant_id=self.ctx.settings.tenant_id, installed=False)
            team.members[aad] = None

    async def list_teams(self, request: web.Request) -> web.Response:
        return json_response(200, {"teams": [team.as_dict() for team in self.ctx.store.teams.values()]})

    async def create_team(self, request: web.Request) -> web.Response:
        """``{"name", "members": [GUID...], "id"?, "aad_group_id"?}``: a new team, or the team with that id
        replaced (the bot stays installed in it, or not)."""
        try:
            data = await json_body(request)
            if not isinstance(data, dict):
                raise ConfigError('the body must be {"name": ..., "members": [...]}')
            name = display_name(data.get("name"), "name")
            members = guid_list(data.get("members", []), "members")
            team_id = data.get("id")
            if team_id is not None and (not isinstance(team_id, str) or not TEAM_ID.fullmatch(team_id)):
                raise ConfigError("id must look like 19:...@thread.tacv2")
            group_id = data.get("aad_group_id")
            if group_id is not None and normalize_aad(group_id) is None:
                raise ConfigError("aad_group_id must be a GUID")
        except ConfigError as exc:
            return control_error(400, str(exc))
        team_id = team_id or f"19:{secrets.token_hex(16)}@thread.tacv2"
        old = self.ctx.store.teams.get(team_id)
        if group_id is not None:
            group_id = normalize_aad(group_id)
        elif old is not None:
            group_id = old.aad_group_id
        team = Team(team_id, name, group_id or str(uuid.uuid4()), bot_installed=old is not None and old.bot_installed)
        self._add_members(team, members)
        self.ctx.store.teams[team_id] = team
        return json_response(201, team.as_dict())

    async def team_action(self, request: web.Request) -> web.Response:
        handler = {"members": self._members, "install": self._install, "uninstall": self._uninstall,
                   "rename": self._rename}.get(request.match_info["action"])
        if handler is None:
            return control_error(404, f"unknown action {request.match_info['action']!r}")
        team = self.ctx.store.teams.get(request.match_info["id"])
        if team is None:
            return control_error(404, f"unknown team {request.match_info['id']!r}")
        try:
            return await handler(team, request)
        except ConfigError as exc:
            return control_error(400, str(exc))

    async def _members(self, team: Team, request: web.Request) -> web.Response:
        """``{"add": [GUID...], "remove": [GUID...]}``; answers the team."""
        data = await json_body(request)
        if not isinstance(data, dict):
            raise ConfigError('the body must be {"add": [...], "remove": [...]}')
        add, remove = guid_list(data.get("add", []), "add"), guid_list(data.get("remove", []), "remove")
        self._add_members(team, add)
        for aad in remove:
            team.members.pop(aad, None)
        return json_response(200, team.as_dict())

    async def _tell_the_bot(self, team: Team, event: str) -> web.Response:
        """Posts the event, as made by the team's first member, and answers with the bot's status."""
        ctx = self.ctx
        activity = team_activity(ctx, team, ctx.store.users[next(iter(team.members))], event)
        status, _ = await ctx.bot.post(ctx.config.bot_endpoint, activity)
        return json_response(200, {"team": team.as_dict(), "conversation_id": team.id,
                                   "service_url": ctx.service_url, "bot_status": [status]})

    async def _install(self, team: Team, request: web.Request) -> web.Response:
        if team.bot_installed:
            return control_error(409, "the bot is already installed in this team")
        if not team.members:
            raise ConfigError("the team has no members: someone must be in it to add the bot")
        team.bot_installed = True
        return await self._tell_the_bot(team, "teamMemberAdded")

    async def _uninstall(self, team: Team, request: web.Request) -> web.Response:
        if not team.bot_installed:
            return control_error(409, "the bot is not installed in this team")
        if not team.members:
            raise ConfigError("the team has no members: someone must be in it to remove the bot")
        team.bot_installed = False
        return await self._tell_the_bot(team, "teamMemberRemoved")

    async def _rename(self, team: Team, request: web.Request) -> web.Response:
        """``{"name": ...}``; the bot hears of it only while it is in the team."""
        data = await json_body(request)
        name = display_name(data.get("name") if isinstance(data, dict) else None, "name")
        if team.bot_installed and not team.members:
            raise ConfigError("the team has no members: someone must be in it to rename it")
        team.name = name
        if not team.bot_installed:
            return json_response(200, {"team": team.as_dict(), "conversation_id": team.id,
                                       "service_url": self.ctx.service_url, "bot_status": []})
        return await self._tell_the_bot(team, "teamRenamed")
