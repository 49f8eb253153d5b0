"""Microsoft Graph, the part Crier uses: the directory's users and their delta query.

``GET /graph/v1.0/users/delta`` behaves as Graph documents it: without a token it lists every user, a page
at a time (``@odata.nextLink``), and the last page carries an ``@odata.deltaLink``; calling that link later
lists only the users that changed since (each with all its selected properties, or with
``Prefer: return=minimal`` only those that changed; a deleted one as ``{"id", "@removed": {"reason":
"changed"}}``). A delta link unused for ``DELTA_TOKEN_DAYS``, or issued
before the control API expired them all, answers 410 ``syncStateNotFound``. The caller needs an app token
for Graph's audience carrying ``User.Read.All`` (or ``Directory.Read.All``); Graph answers 401 without
one and 403 ``Authorization_RequestDenied`` without the permission. The control API can make the next
calls answer 429 with ``Retry-After``.

The directory (``Directory``) is the emulator's own, apart from its Teams users: an organisation's
directory holds people who never opened Teams. It holds the organisation's groups too, served by
``groups.py``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from .config import ConfigError
from .responses import control_error, json_body, json_response
from .state import normalize_aad

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
READ_USERS = {"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"}
# What a tenant admin consented to, unless the control API says otherwise.
DEFAULT_PERMISSIONS = ("User.Read.All", "GroupMember.Read.All", "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All",
                       "AppCatalog.Read.All", "TeamsActivity.Send")
DELTA_TOKEN_DAYS = 7
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999
# Properties a user always has in the directory; others (extension attributes, employeeOrgData...) may
# be set per user and are returned when selected.
USER_PROPERTIES = (
    "displayName", "givenName", "surname", "mail", "userPrincipalName", "department", "jobTitle",
    "officeLocation", "country", "usageLocation", "preferredLanguage", "employeeId", "accountEnabled",
)


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Graph's error body: ``{"error": {"code", "message", "innerError": {...}}}``."""
    inner = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    return json_response(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)


@dataclass
class DirectoryUser:
    id: str
    properties: dict[str, Any]
    changed: dict[str, int]  # property -> the directory version it last changed at
    deleted_at: int | None = None  # the version it was deleted at
    # The values of the app roles the person is assigned in the app (its id token's ``roles``): not a
    # property Graph lists with the user, so not in the delta query either.
    app_roles: list[str] = field(default_factory=list)


@dataclass
class Group:
    id: str
    display_name: str
    description: str | None = None
    members: list[str] = field(default_factory=list)  # user and group ids, in the order they were added
    membership_rule: str | None = None  # set for a dynamic group; only shown, never evaluated

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "displayName": self.display_name, "description": self.description,
                "members": list(self.members), "membershipRule": self.membership_rule}


@dataclass
class Directory:
    """The tenant's users, with a version counter that every change moves on, for delta queries."""

    users: dict[str, DirectoryUser] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    version: int = 0
    # Delta links issued under another generation answer 410: a restarted emulator, whose directory is new,
    # knows none of the links the last one gave.
    generation: int = field(default_factory=lambda: time.time_ns())
    page_size: int = DEFAULT_PAGE_SIZE
    permissions: tuple[str, ...] = DEFAULT_PERMISSIONS
    throttle_next: int = 0  # the next this many calls answer 429
    retry_after_seconds: int = 1
    requests: int = 0
    throttled: int = 0

    def reset(self) -> None:
        self.users.clear()
        self.groups.clear()
        self.version, self.page_size, self.permissions = 0, DEFAULT_PAGE_SIZE, DEFAULT_PERMISSIONS
        self.throttle_next, self.retry_after_seconds, self.requests, self.throttled = 0, 1, 0, 0
        self.generation += 1

    def upsert(self, user_id: str, properties: dict[str, Any], app_roles: list[str] | None = None) -> DirectoryUser:
        """Creates or changes a user; a property set to its current value is no change. ``app_roles``
        replaces the person's app roles when given."""
        user = self.users.get(user_id)
        if user is None or user.deleted_at is not None:
            self.version += 1
            base = {"accountEnabled": True, "userType": "Member"}
            user = DirectoryUser(user_id, {**base, **properties}, {}, app_roles=list(app_roles or []))
            user.changed = {name: self.version for name in ("id", *user.properties)}
            self.users[user_id] = user
            return user
        if app_roles is not None:
            user.app_roles = list(app_roles)
        changed = {name: value for name, value in properties.items() if user.properties.get(name) != value}
        if changed:
            self.version += 1
            user.properties.update(changed)
            user.changed.update({name: self.version for name in changed})
        return user

    def delete(self, user_id: str) -> bool:
        user = self.users.get(user_id)
        if user is None or user.deleted_at is not None:
            return False
        self.version += 1
        user.deleted_at = self.version
        return True


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any] | None:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


class Graph:
    def __init__(self, ctx) -> None:
        self.ctx = ctx

    @property
    def directory(self) -> Directory:
        return self.ctx.directory

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/graph/v1.0/users/delta", self.users_delta)]

    def _refusal(self, request: web.Request, needed: Collection[str] = READ_USERS) -> web.Response | None:
        """Graph's answer to a call without a valid token, without any of the ``needed`` permissions, or
        throttled."""
        directory = self.directory
        directory.requests += 1
        authorization = request.headers.get("Authorization", "")
        try:
            claims = jwt.decode(authorization.removeprefix("Bearer ").strip(), self.ctx.key.public_key,
                                algorithms=["RS256"], audience=GRAPH_AUDIENCE, options={"require": ["exp", "aud"]})
        except jwt.InvalidTokenError:
            return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if claims.get("tid") != self.ctx.settings.tenant_id or claims.get("appid") != self.ctx.settings.app_id:
            return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if not set(needed) & set(claims.get("roles") or []):
            return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        if directory.throttle_next > 0:
            directory.throttle_next -= 1
            directory.throttled += 1
            return graph_error(429, "TooManyRequests", "Too many requests.",
                               {"Retry-After": str(directory.retry_after_seconds)})
        return None

    def _roles(self, request: web.Request) -> set[str]:
        """The permissions of a token ``_refusal`` accepted."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        claims = jwt.decode(token, self.ctx.key.public_key, algorithms=["RS256"], audience=GRAPH_AUDIENCE)
        return set(claims.get("roles") or [])

    def _link(self, kind: str, state: dict[str, Any]) -> str:
        parameter = "$deltatoken" if kind == "delta" else "$skiptoken"
        return f"{self.ctx.base_url}/graph/v1.0/users/delta?{parameter}={_encode(state)}"

    async def users_delta(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        directory, query = self.directory, request.query
        if "$skiptoken" in query:  # the next page of a round already under way
            state = _decode(query["$skiptoken"])
            if state is None or state.get("g") != directory.generation:
                return graph_error(400, "Request_BadRequest", "The $skiptoken is not valid.")
        elif "$deltatoken" in query:  # a new round, from where the last one ended
            token = _decode(query["$deltatoken"])
            if token is None:
                return graph_error(400, "Request_BadRequest", "The $deltatoken is not valid.")
            expired = time.time() - token.get("t", 0) > DELTA_TOKEN_DAYS * 86400
            if token.get("g") != directory.generation or expired:
                return graph_error(410, "syncStateNotFound",
                                   "The sync state generation is not found. Start the sync again without a token.")
            state = {"since": token["since"], "select": token["select"], "start": directory.version, "after": -1,
                     "g": directory.generation}
        else:  # a full round
            select = [name.strip() for name in query.get("$select", "").split(",") if name.strip() not in ("", "id")]
            if not select:
                select = ["displayName", "givenName", "surname", "mail", "userPrincipalName", "jobTitle",
                          "officeLocation", "preferredLanguage"]
            state = {"since": None, "select": select, "start": directory.version, "after": -1,
                     "g": directory.generation}
        minimal = "return=minimal" in request.headers.get("Prefer", "")
        page, after, more = self._page(state, minimal)
        body: dict[str, Any] = {"@odata.context": f"{self.ctx.base_url}/graph/v1.0/$metadata#users", "value": page}
        if more:
            body["@odata.nextLink"] = self._link("next", {**state, "after": after})
        else:
            # The next round lists what changed since this one began: a change made while it was paged may
            # be listed twice, never lost.
            body["@odata.deltaLink"] = self._link(
                "delta", {"since": state["start"], "select": state["select"], "t": time.time(), "g": state["g"]}
            )
        return json_response(200, body)

    def _page(self, state: dict[str, Any], minimal: bool) -> tuple[list[dict[str, Any]], int, bool]:
        """The next page of a round: users in the order they were created, from just after the position
        ``after`` (a cursor that moves only forward, so a user changed while the round is paged is never
        skipped). Without a ``since`` every user is listed; with one, what changed after it: a deleted user
        as ``@removed``, a changed one with every selected property (Graph's default) or, with
        ``Prefer: return=minimal``, with the properties that changed. Returns the page, the cursor, and
        whether users are left."""
        since, select, size = state["since"], state["select"], self.directory.page_size
        users = list(self.directory.users.values())
        page: list[dict[str, Any]] = []
        position = state["after"]
        for position in range(state["after"] + 1, len(users)):
            if len(page) == size:
                return page, position - 1, True
            user = users[position]
            if since is None:
                if user.deleted_at is None:
                    page.append({"id": user.id, **{name: user.properties.get(name) for name in select}})
            elif user.deleted_at is not None:
                if user.deleted_at > since:  # a caller may have seen it, even if it was made after ``since``
                    page.append({"id": user.id, "@removed": {"reason": "changed"}})
            else:
                changed = [name for name in select if user.changed.get(name, 0) > since]
                if changed:
                    shown = changed if minimal else [name for name in select if name in user.properties]
                    page.append({"id": user.id, **{name: user.properties.get(name) for name in shown}})
        return page, position, False


# --- the control API's part -----------------------------------------------------------------------


class GraphControl:
    """``/_emulator/graph/...``: set up the directory and make Graph misbehave, for tests and the demo."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_emulator/graph/users", self.upsert_users),
            web.post("/_emulator/graph/users/{id}/delete", self.delete_user),
            web.post("/_emulator/graph/expire-delta-links", self.expire),
            web.post("/_emulator/graph/config", self.config),
            web.get("/_emulator/graph/stats", self.stats),
        ]

    async def upsert_users(self, request: web.Request) -> web.Response:
        """``{"users": [{"id": GUID, "displayName": ..., "appRoles"?: [role values], ...}]}``: every entry
        checked before any is kept."""
        try:
            data = await json_body(request)
            users = data.get("users") if isinstance(data, dict) else None
            if not isinstance(users, list):
                raise ConfigError('the body must be {"users": [...]}')
            checked = []
            for index, entry in enumerate(users):
                user_id = normalize_aad(entry.get("id")) if isinstance(entry, dict) else None
                if user_id is None:
                    raise ConfigError(f"users[{index}].id must be a GUID")
                roles = entry.get("appRoles")
                if roles is not None and (not isinstance(roles, list)
                                          or not all(isinstance(role, str) and role.strip() for role in roles)):
                    raise ConfigError(f"users[{index}].appRoles must be a list of role values (non-empty strings)")
                properties = {key: value for key, value in entry.items() if key not in ("id", "appRoles")}
                checked.append((user_id, properties, roles))
        except ConfigError as exc:
            return control_error(400, str(exc))
        directory = self.ctx.directory
        for user_id, properties, roles in checked:
            directory.upsert(user_id, properties, roles)
        return json_response(200, {"version": directory.version, "users": len(directory.users)})

    async def delete_user(self, request: web.Request) -> web.Response:
        user_id = normalize_aad(request.match_info["id"])
        if user_id is None or not self.ctx.directory.delete(user_id):
            return control_error(404, "no such user in the directory")
        return json_response(200, {"version": self.ctx.directory.version})

    async def expire(self, request: web.Request) -> web.Response:
        self.ctx.directory.generation += 1
        return json_response(200, {"generation": self.ctx.directory.generation})

    async def config(self, request: web.Request) -> web.Response:
        """``page_size``, ``permissions`` (the application permissions consented), ``throttle_next`` and
        ``retry_after_seconds``, and the app's sign-in settings (``sign_in_redirect_uris``, ``group_claims``,
        ``sign_in_code_seconds``: see ``signin.py``); all checked before any is changed."""
        try:
            data = await json_body(request)
            if not isinstance(data, dict):
                raise ConfigError("the body must be an object")
            size = data.get("page_size", 1)
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
                raise ConfigError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
            permissions = data.get("permissions", [])
            if not isinstance(permissions, list) or not all(isinstance(name, str) for name in permissions):
                raise ConfigError("permissions must be a list of names")
            for name in ("throttle_next", "retry_after_seconds"):
                value = data.get(name, 0)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"{name} must be a whole number, 0 or more")
            sign_in = self.ctx.sign_ins.checked_config(data)
        except ConfigError as exc:
            return control_error(400, str(exc))
        self.ctx.sign_ins.configure(sign_in)
        directory = self.ctx.directory
        if "permissions" in data:
            directory.permissions = tuple(data["permissions"])
        for name in ("page_size", "throttle_next", "retry_after_seconds"):
            if name in data:
                setattr(directory, name, data[name])
        return await self.stats(request)

    async def stats(self, request: web.Request) -> web.Response:
        directory = self.ctx.directory
        return json_response(200, {
            "users": sum(1 for user in directory.users.values() if user.deleted_at is None),
            "groups": len(directory.groups),
            "version": directory.version, "generation": directory.generation, "page_size": directory.page_size,
            "permissions": list(directory.permissions), "requests": directory.requests,
            "throttled": directory.throttled, "throttle_next": directory.throttle_next,
            **self.ctx.installs.stats(), **self.ctx.feed.stats(), **self.ctx.sign_ins.stats(),
        })
