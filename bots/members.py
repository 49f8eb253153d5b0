"""Who is in an Entra ID group (Microsoft Graph: its transitive members, so nested and dynamic groups work)
or in a Teams team (the Bot Connector's paged members of a team the bot was added to), a page at a time;
and finding a group by its name. Every refusal becomes ``ListingError``, in plain words."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings

from core.channels import Address, Deferred

from .connector import ConnectorError
from .graph import GraphClient, GraphError, graph, graph_interactive
from .models import TeamsTeam
from .transport import TeamsTransport

logger = logging.getLogger(__name__)

GROUP_PERMISSION = "GroupMember.Read.All"
# Graph's $search and $count on directory objects are "advanced queries": they need this header.
ADVANCED_QUERY = {"ConsistencyLevel": "eventual"}
MEMBER_FIELDS = "id,displayName,userPrincipalName,mail"
GRAPH_PAGE = 999  # the most Graph gives a page
TEAM_PAGE = 500  # the most the Bot Connector gives a page
TEAM_ATTEMPTS = 6
TEAM_MAX_WAIT_SECONDS = 30.0
TEAM_RETRIED = {412, 429, 502, 503, 504}


class ListingError(Exception):
    """Why a group or team could not be read: ``str()`` says it plainly, with what to do."""


@dataclass(frozen=True)
class Member:
    aad_object_id: str
    name: str
    user_id: str = ""  # the 29: id a team's roster gives


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    description: str
    dynamic: bool


@dataclass(frozen=True)
class MemberPage:
    members: list[Member]
    more: bool  # another page follows
    total: int | None = None  # how many the group holds, when Graph says


def _plain(error: GraphError, group_id: str) -> ListingError:
    if error.status == 404:
        return ListingError(f"Entra ID has no group {group_id}: it was deleted, or the id is wrong. Choose the group again.")
    if error.status == 400 and error.code == "Request_BadRequest":
        return ListingError(f"Entra ID does not take {group_id!r} as a group id: {error.message}")
    error.needs = error.needs or GROUP_PERMISSION
    return ListingError(error.plain())


def _group(data: dict[str, Any]) -> Group:
    return Group(
        id=str(data.get("id") or ""), name=str(data.get("displayName") or ""),
        description=str(data.get("description") or "")[:300],
        dynamic="DynamicMembership" in (data.get("groupTypes") or []),
    )


def groups_search(term: str, *, limit: int = 20, client: GraphClient = graph_interactive) -> list[Group]:
    """Groups whose name has a word starting with ``term`` (Graph's ``$search``), by name."""
    words = term.replace('"', " ").replace("\\", " ").strip()[:100]
    if not words:
        return []
    url = client.url("/groups", {
        "$search": f'"displayName:{words}"', "$select": "id,displayName,description,groupTypes",
        "$orderby": "displayName", "$top": str(limit),
    })
    try:
        data = client.get(url, needs=GROUP_PERMISSION, headers=ADVANCED_QUERY)
    except GraphError as error:
        error.needs = error.needs or GROUP_PERMISSION
        raise ListingError(error.plain()) from error
    return [_group(entry) for entry in data.get("value") or [] if isinstance(entry, dict) and entry.get("id")]


def group_get(group_id: str, *, client: GraphClient = graph) -> Group:
    url = client.url(f"/groups/{quote(group_id, safe='')}", {"$select": "id,displayName,description,groupTypes"})
    try:
        return _group(client.get(url, needs=GROUP_PERMISSION))
    except GraphError as error:
        raise _plain(error, group_id) from error


def group_member_pages(group_id: str, *, client: GraphClient = graph) -> Iterator[MemberPage]:
    """The people in the group, directly or through the groups in it, a page at a time."""
    url = client.url(f"/groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user", {
        "$select": MEMBER_FIELDS, "$top": str(GRAPH_PAGE), "$count": "true",
    })
    while url:
        try:
            data = client.get(url, needs=GROUP_PERMISSION, headers=ADVANCED_QUERY)
        except GraphError as error:
            raise _plain(error, group_id) from error
        members = [
            Member(aad_object_id=str(entry["id"]), name=str(entry.get("displayName") or entry.get("userPrincipalName") or ""))
            for entry in data.get("value") or [] if isinstance(entry, dict) and entry.get("id")
        ]
        count = data.get("@odata.count")
        url = data.get("@odata.nextLink") or ""
        yield MemberPage(members, bool(url), count if isinstance(count, int) else None)


def team_member_pages(
    team: TeamsTeam, *, transport: TeamsTransport | None = None, sleep: Callable[[float], None] = time.sleep,
    attempts: int = TEAM_ATTEMPTS,
) -> Iterator[MemberPage]:
    """The people in a team the bot is in, a page at a time, each call paced like every call to Teams
    and tried again (up to ``attempts`` calls) after Teams' 429 (its ``Retry-After``) or a passing failure."""
    transport = transport or TeamsTransport()
    address = Address(
        member_id="", tenant_id=team.tenant_id or settings.BOT_TENANT_ID,
        service_url=team.service_url or settings.TEAMS_SERVICE_URL, conversation_id=team.team_id,
    )
    continuation = ""
    while True:
        data = _team_page(team, transport, address, continuation, sleep, attempts)
        members = [  # one without an Entra object id (a guest, a bot) is kept, to be counted as unknown
            Member(aad_object_id=str(entry.get("aadObjectId") or ""), name=str(entry.get("name") or "")[:200],
                   user_id=str(entry.get("id") or ""))
            for entry in data.get("members") or [] if isinstance(entry, dict)
        ]
        continuation = data.get("continuationToken") or ""
        yield MemberPage(members, bool(continuation))
        if not continuation:
            return


def _team_page(team: TeamsTeam, transport: TeamsTransport, address: Address, continuation: str, sleep,
               attempts: int) -> dict:
    for attempt in range(attempts):
        try:
            return transport.members_page(address=address, continuation=continuation, page_size=TEAM_PAGE)
        except Deferred as deferred:
            if attempt < attempts - 1:  # the last attempt fails at once rather than wait for nothing
                sleep(min(deferred.wait, TEAM_MAX_WAIT_SECONDS))
        except ConnectorError as error:
            if error.status == 403 and error.code in ("BotNotInConversationRoster", "ForbiddenOperationException"):
                raise ListingError(
                    f"Crier's bot is no longer in the team “{team}”: add the app to the team again, or choose "
                    "another audience."
                ) from error
            if error.status == 404:
                raise ListingError(f"Teams no longer knows the team “{team}”: it was deleted. Choose another audience.") from error
            if (error.status is not None and error.status not in TEAM_RETRIED) or attempt == attempts - 1:
                raise ListingError(f"Teams refused to list the members of “{team}”: {error}.") from error
            wait = error.retry_after if error.retry_after is not None else 2.0 ** attempt
            logger.info("listing team %s: %s; trying again in %.1f s", team.team_id, error, wait)
            sleep(min(wait, TEAM_MAX_WAIT_SECONDS))
    raise ListingError(f"Teams kept refusing to list the members of “{team}”; try again later.")
