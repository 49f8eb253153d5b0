"""Microsoft Graph's groups, the part Crier uses: find groups by name, read one, and list the people in
one, nested groups included.

``GET /graph/v1.0/groups?$search="displayName:sal"`` finds the groups whose name, or a word of it, starts
with the term (any case); ``$search`` and ``$count`` need the header ``ConsistencyLevel: eventual``, as
Graph requires. ``GET /graph/v1.0/groups/{id}`` reads one group, and
``GET /graph/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user`` lists the users in it, directly or
through nested groups (each once, however the groups nest, cycles included), in the order the directory
made them; deleted users are left out, disabled ones are listed (``accountEnabled``). Without
``/microsoft.graph.user`` the nested groups are listed too, after the users. Lists come a page at a time
(``$top``, ``@odata.nextLink``). Tokens, 401s and injected 429s are the users delta's; the permission is
any of ``GroupMember.Read.All``, ``Group.Read.All`` or ``Directory.Read.All``.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from .config import ConfigError
from .graph import MAX_PAGE_SIZE, Directory, DirectoryUser, Graph, Group, _decode, _encode, graph_error
from .responses import control_error, json_body, json_response
from .state import normalize_aad

READ_GROUPS = ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All")
DEFAULT_PAGE_SIZE = 100
MAX_NAME_LENGTH = 256
GROUP_SELECT = ("displayName", "description", "mail", "groupTypes", "membershipRule")
USER_SELECT = ("displayName", "givenName", "surname", "mail", "userPrincipalName", "jobTitle", "officeLocation",
               "preferredLanguage")
_SEARCH = re.compile(r'"(?i:displayName):(.*)"', re.DOTALL)
_WORD_BREAKS = re.compile(r"[\W_]+")


class BadQuery(Exception):
    """A call Graph refuses: its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return graph_error(self.status, self.code, self.message)


def guid_list(value: Any, where: str) -> list[str]:
    """A list of GUIDs, normalised, each once in its first place; ConfigError otherwise."""
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of GUIDs")
    ids: dict[str, None] = {}
    for index, item in enumerate(value):
        normal = normalize_aad(item)
        if normal is None:
            raise ConfigError(f"{where}[{index}] must be a GUID")
        ids[normal] = None
    return list(ids)


def display_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise ConfigError(f"{where} must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    return value


def group_properties(group: Group) -> dict[str, Any]:
    """The group as Graph shows it (a security group: no mail)."""
    dynamic = group.membership_rule is not None
    return {
        "id": group.id, "displayName": group.display_name, "description": group.description, "mail": None,
        "mailEnabled": False, "securityEnabled": True, "groupTypes": ["DynamicMembership"] if dynamic else [],
        "membershipRule": group.membership_rule, "membershipRuleProcessingState": "On" if dynamic else None,
    }


def matches(name: str, term: str) -> bool:
    """Graph's ``displayName:`` search: the name, or one of its words, starts with the term (any case)."""
    name, term = name.casefold(), term.casefold()
    return name.startswith(term) or any(word.startswith(term) for word in _WORD_BREAKS.split(name) if word)


def transitive_members(directory: Directory, group: Group) -> tuple[list[DirectoryUser], list[Group]]:
    """The users in ``group`` directly or through nested groups, in the order the directory made them
    (deleted ones left out; ids the directory does not know ignored), and the nested groups, breadth
    first. A group met again (a cycle) is not walked twice; the group itself is never its own member."""
    found_users: set[str] = set()
    nested: list[Group] = []
    seen, waiting = {group.id}, deque([group])
    while waiting:
        for member in waiting.popleft().members:
            if member in directory.users:
                found_users.add(member)
            elif member in directory.groups and member not in seen:
                seen.add(member)
                nested.append(directory.groups[member])
                waiting.append(directory.groups[member])
    users = [user for user in directory.users.values() if user.id in found_users and user.deleted_at is None]
    return users, nested


def member_of(directory: Directory, member_id: str) -> list[str]:
    """The ids of the groups ``member_id`` (a user or a group) is in, directly or through nested groups, in
    the order the directory made them; each once, however the groups nest (cycles too). What Entra puts
    in a token's ``groups`` claim."""
    parents: dict[str, list[str]] = {}
    for group in directory.groups.values():
        for member in group.members:
            parents.setdefault(member, []).append(group.id)
    found: set[str] = set()
    waiting = deque([member_id])
    while waiting:
        for parent in parents.get(waiting.popleft(), ()):
            if parent not in found:
                found.add(parent)
                waiting.append(parent)
    return [group_id for group_id in directory.groups if group_id in found]


class GraphGroups(Graph):
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/graph/v1.0/groups", self.list_groups),
            web.get("/graph/v1.0/groups/{id}", self.get_group),
            web.get("/graph/v1.0/groups/{id}/transitiveMembers", self.members),
            web.get("/graph/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user", self.members),
        ]

    # Query options --------------------------------------------------------------------------------

    @staticmethod
    def _eventual(request: web.Request) -> bool:
        return request.headers.get("ConsistencyLevel", "").strip().lower() == "eventual"

    def _select(self, request: web.Request, default: tuple[str, ...]) -> list[str]:
        names = [name.strip() for name in request.query.get("$select", "").split(",")]
        return [name for name in names if name and name != "id"] or list(default)

    def _count(self, request: web.Request) -> bool:
        value = request.query.get("$count", "false").strip().lower()
        if value not in ("true", "false"):
            raise BadQuery(400, "Request_BadRequest", f"Invalid value '{value}' for $count: true or false.")
        if value == "true" and not self._eventual(request):
            raise BadQuery(400, "Request_UnsupportedQuery",
                           "$count is supported only with the request header 'ConsistencyLevel: eventual'.")
        return value == "true"

    def _top(self, request: web.Request, default: int) -> int:
        top = request.query.get("$top")
        if top is None:
            return default
        if not top.strip().isdigit() or not 1 <= int(top) <= MAX_PAGE_SIZE:
            raise BadQuery(400, "Request_BadRequest",
                           f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE_SIZE} inclusive.")
        return int(top)

    def _state(self, request: web.Request, listing: str, fresh: dict[str, Any]) -> dict[str, Any]:
        """Where this page starts: a new listing, or the one its ``$skiptoken`` continues (which must
        come from this directory's generation and this listing)."""
        if "$skiptoken" not in request.query:
            return {**fresh, "g": self.ctx.directory.generation, "l": listing, "o": 0}
        state = _decode(request.query["$skiptoken"])
        if state is None or state.get("g") != self.ctx.directory.generation or state.get("l") != listing:
            raise BadQuery(400, "Request_BadRequest", "The $skiptoken is not valid.")
        offset, size, select = state.get("o"), state.get("n"), state.get("s")
        if (not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or size < 1
                or not isinstance(select, list) or not all(isinstance(name, str) for name in select)
                or not isinstance(state.get("q"), str | None)):
            raise BadQuery(400, "Request_BadRequest", "The $skiptoken is not valid.")
        return state

    def _page(self, request: web.Request, context: str, items: list[dict[str, Any]], state: dict[str, Any],
              count: bool) -> web.Response:
        start, size = state["o"], state["n"]
        body: dict[str, Any] = {"@odata.context": f"{self.ctx.base_url}/graph/v1.0/$metadata#{context}"}
        if count:
            body["@odata.count"] = len(items)
        if start + size < len(items):
            query = [(key, value) for key, value in request.query.items() if key != "$skiptoken"]
            query.append(("$skiptoken", _encode({**state, "o": start + size})))
            body["@odata.nextLink"] = (f"{self.ctx.base_url}{request.path}?"
                                       f"{urlencode(query, quote_via=quote, safe='$,')}")
        body["value"] = items[start:start + size]
        return json_response(200, body)

    def _group(self, request: web.Request) -> Group:
        raw = request.match_info["id"]
        group_id = normalize_aad(raw)
        if group_id is None:
            raise BadQuery(400, "Request_BadRequest", f"Invalid object identifier '{raw}'.")
        group = self.ctx.directory.groups.get(group_id)
        if group is None:
            raise BadQuery(404, "Request_ResourceNotFound",
                           f"Resource '{raw}' does not exist or one of its queried reference-property objects "
                           "are not present.")
        return group

    # Handlers -------------------------------------------------------------------------------------

    async def list_groups(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request, READ_GROUPS):
            return refusal
        query = request.query
        try:
            term = None
            if "$search" in query:
                if not self._eventual(request):
                    raise BadQuery(400, "Request_UnsupportedQuery",
                                   "Request with $search query parameter only works through MSGraph with a special "
                                   "request header: 'ConsistencyLevel: eventual'")
                found = _SEARCH.fullmatch(query["$search"].strip())
                if found is None:
                    raise BadQuery(400, "Request_BadRequest",
                                   f"Syntax error in $search {query['$search']!r}: use \"displayName:<term>\".")
                term = found.group(1)
            if query.get("$orderby", "displayName").strip() not in ("displayName", "displayName asc"):
                raise BadQuery(400, "Request_UnsupportedQuery", "Groups can be sorted by displayName only.")
            count = self._count(request)
            fresh = {"s": self._select(request, GROUP_SELECT), "n": self._top(request, DEFAULT_PAGE_SIZE), "q": term}
            state = self._state(request, "groups", fresh)
        except BadQuery as refused:
            return refused.response()
        groups = sorted(self.ctx.directory.groups.values(), key=lambda group: (group.display_name.casefold(), group.id))
        if state["q"] is not None:
            groups = [group for group in groups if matches(group.display_name, state["q"])]
        shown = []
        for group in groups:
            properties = group_properties(group)
            shown.append({"id": group.id, **{name: properties.get(name) for name in state["s"]}})
        return self._page(request, "groups", shown, state, count)

    async def get_group(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request, READ_GROUPS):
            return refusal
        try:
            group = self._group(request)
        except BadQuery as refused:
            return refused.response()
        properties = group_properties(group)
        select = self._select(request, GROUP_SELECT)
        return json_response(200, {"@odata.context": f"{self.ctx.base_url}/graph/v1.0/$metadata#groups/$entity",
                                   "id": group.id, **{name: properties.get(name) for name in select}})

    async def members(self, request: web.Request) -> web.Response:
        """``transitiveMembers``: users only under ``/microsoft.graph.user``, else users then groups, each
        marked with its ``@odata.type``."""
        if refusal := self._refusal(request, READ_GROUPS):
            return refusal
        users_only = request.path.endswith("/microsoft.graph.user")
        try:
            group = self._group(request)
            count = self._count(request)
            fresh = {"s": self._select(request, USER_SELECT), "n": self._top(request, self.ctx.directory.page_size)}
            state = self._state(request, f"{group.id}/{'users' if users_only else 'all'}", fresh)
        except BadQuery as refused:
            return refused.response()
        users, nested = transitive_members(self.ctx.directory, group)
        marked: dict[str, Any] = {} if users_only else {"@odata.type": "#microsoft.graph.user"}
        shown = [{**marked, "id": user.id, **{name: user.properties.get(name) for name in state["s"]}}
                 for user in users]
        if not users_only:
            shown += [{"@odata.type": "#microsoft.graph.group", "id": inner.id, "displayName": inner.display_name}
                      for inner in nested]
        return self._page(request, "users" if users_only else "directoryObjects", shown, state, count)


# --- the control API's part -----------------------------------------------------------------------


class GroupsControl:
    """``/_emulator/graph/groups...``: set up the directory's groups."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_emulator/graph/groups", self.upsert_groups),
            web.post("/_emulator/graph/groups/{id}/members", self.change_members),
            web.post("/_emulator/graph/groups/{id}/delete", self.delete_group),
        ]

    async def upsert_groups(self, request: web.Request) -> web.Response:
        """``{"groups": [{"id", "displayName", "description"?, "members"?, "membershipRule"?}]}``: each
        group created or replaced, every entry checked before any is kept."""
        try:
            data = await json_body(request)
            entries = data.get("groups") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ConfigError('the body must be {"groups": [...]}')
            checked = []
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise ConfigError(f"groups[{index}] must be an object")
                group_id = normalize_aad(entry.get("id"))
                if group_id is None:
                    raise ConfigError(f"groups[{index}].id must be a GUID")
                name = display_name(entry.get("displayName"), f"groups[{index}].displayName")
                for key in ("description", "membershipRule"):
                    if entry.get(key) is not None and not isinstance(entry[key], str):
                        raise ConfigError(f"groups[{index}].{key} must be a string")
                members = guid_list(entry.get("members", []), f"groups[{index}].members")
                checked.append(Group(group_id, name, entry.get("description"), members, entry.get("membershipRule")))
        except ConfigError as exc:
            return control_error(400, str(exc))
        groups = self.ctx.directory.groups
        for group in checked:
            groups[group.id] = group
        return json_response(200, {"groups": len(groups)})

    def _group(self, request: web.Request) -> Group | None:
        group_id = normalize_aad(request.match_info["id"])
        return self.ctx.directory.groups.get(group_id) if group_id else None

    async def change_members(self, request: web.Request) -> web.Response:
        """``{"add": [GUID...], "remove": [GUID...]}``; answers the group."""
        group = self._group(request)
        if group is None:
            return control_error(404, "no such group in the directory")
        try:
            data = await json_body(request)
            if not isinstance(data, dict):
                raise ConfigError('the body must be {"add": [...], "remove": [...]}')
            add, remove = guid_list(data.get("add", []), "add"), guid_list(data.get("remove", []), "remove")
        except ConfigError as exc:
            return control_error(400, str(exc))
        removed = set(remove)
        group.members = [member for member in dict.fromkeys(group.members + add) if member not in removed]
        return json_response(200, group.as_dict())

    async def delete_group(self, request: web.Request) -> web.Response:
        group = self._group(request)
        if group is None:
            return control_error(404, "no such group in the directory")
        del self.ctx.directory.groups[group.id]
        return json_response(200, {"groups": len(self.ctx.directory.groups)})
