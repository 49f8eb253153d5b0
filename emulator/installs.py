"""Microsoft Graph's proactive installation of a Teams app for a person, the part Crier uses: find the app
in the organisation's catalog, install it for someone who never did, find that installation, and read the
one-to-one chat it opened.

``GET /graph/v1.0/appCatalogs/teamsApps?$filter=externalId eq '{manifest id}'`` finds the app the
organisation uploaded (the catalog's ``id`` for it is not the manifest's). ``POST
/graph/v1.0/users/{id}/teamwork/installedApps`` with ``{"teamsApp@odata.bind":
".../appCatalogs/teamsApps/{catalog id}"}`` installs it: 201 with no body, as Graph documents, and the bot
hears of it as from Teams (``conversationUpdate``, then ``installationUpdate`` ``add``), posted in the background
so that the answer never waits for the bot nor depends on it. 409 when the person has the app already,
403 when the tenant's app permission policy blocks it, 404 for a person or an app Graph does not know, and,
with the limits on, 429 beyond 30 installation calls a second. ``GET .../installedApps?$expand=teamsApp
&$filter=teamsApp/externalId eq '...'`` lists the person's installation of the app, and ``GET
.../installedApps/{installation id}/chat`` gives the chat's id in Graph's form (``19:{id}_{id}@unq.gbl.spaces``,
the person's and the bot's), which the Bot Connector accepts as another name for the person's conversation
(whose ``a:`` id the bot hears of at install). Tokens, 401s and injected 429s are the users delta's.

The emulator serves one bot: every app in its catalog stands for it, so a person has all of them or none
(``User.installed``). After a reset the catalog holds Crier's app under the manifest id Crier derives from
the bot's app id when ``TEAMS_APP_ID`` is empty.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web

from .bot_client import install_activities
from .config import ConfigError
from .graph import Graph, graph_error
from .groups import BadQuery, display_name, guid_list
from .limits import INSTALL_WINDOWS, SENT_AT_HEADER, MadeMoments, SlidingLimiter, made_at, retry_after_header
from .responses import control_error, empty_response, json_body, json_response
from .state import User, normalize_aad

logger = logging.getLogger("emulator")

# Crier's (bots/app_package.py): its manifest id is uuid5(this, BOT_APP_ID) unless TEAMS_APP_ID is set.
APP_ID_NAMESPACE = uuid.UUID("6d1f6a36-52a8-4be4-9c49-1f4f3e0f7a2c")
# The catalog's id for an app is uuid5(this, its manifest id): the same app, the same id after every reset.
CATALOG_NAMESPACE = uuid.uuid5(APP_ID_NAMESPACE, "organization-app-catalog")
DEFAULT_APP_NAME = "Crier"
# Installing an app that asks for resource-specific permissions, consenting to them on the way, needs an
# ``AndConsent`` permission; installing alone takes any of these.
AND_CONSENT = ("TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All", "TeamsAppInstallation.ReadWriteAndConsentForUser.All")
INSTALL = ("TeamsAppInstallation.ReadWriteSelfForUser.All", "TeamsAppInstallation.ReadWriteForUser.All", *AND_CONSENT)
PERMISSION_TYPES = ("application", "delegated")  # teamsAppResourceSpecificPermissionType, as Graph spells it
READ_INSTALLED = (*INSTALL, "TeamsAppInstallation.ReadForUser.All")
# Graph lets the installation permissions read the catalog, to find the app to install.
# As Microsoft documents the catalog's list: the installation permissions do not read it.
READ_CATALOG = ("AppCatalog.Read.All", "AppCatalog.ReadWrite.All", "Directory.Read.All")
CATALOG_FILTER = {"id": "id", "externalid": "externalId", "distributionmethod": "distributionMethod"}
INSTALLED_FILTER = {"teamsapp/id": "id", "teamsapp/externalid": "externalId"}
EXPANDABLE = ("teamsApp",)
_CLAUSE = re.compile(r"\s*([A-Za-z/]+)\s+eq\s+'([^']*)'\s*", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_BIND = re.compile(r"/appCatalogs/teamsApps/([^/]+)$")


def manifest_id(bot_app_id: str) -> str:
    """The manifest id Crier gives its app when ``TEAMS_APP_ID`` is empty."""
    return str(uuid.uuid5(APP_ID_NAMESPACE, bot_app_id))


def catalog_id(external_id: str) -> str:
    return str(uuid.uuid5(CATALOG_NAMESPACE, external_id))


def chat_id(aad: str, bot_app_id: str) -> str:
    """Graph's id for a one-to-one chat: its two members' ids, sorted, the same for the person every time."""
    return "19:" + "_".join(sorted((aad, bot_app_id.lower()))) + "@unq.gbl.spaces"


def installation_id(aad: str, app_id: str) -> str:
    """Graph's form, base64 of ``{user id}##{catalog id}``: the same for the person and the app every time."""
    return base64.urlsafe_b64encode(f"{aad}##{app_id}".encode()).decode()


@dataclass
class CatalogApp:
    id: str  # the catalog's own id
    external_id: str  # the manifest's id
    display_name: str

    def as_graph(self) -> dict[str, Any]:
        return {"id": self.id, "externalId": self.external_id, "displayName": self.display_name,
                "distributionMethod": "organization"}


@dataclass
class Installs:
    """The org app catalog, the app permission policy, the installation limit and counters."""

    bot_app_id: str
    catalog: dict[str, CatalogApp] = field(default_factory=dict)  # by catalog id
    blocked_tenant: bool = False
    blocked_users: set[str] = field(default_factory=set)
    limiter: SlidingLimiter = field(default_factory=lambda: SlidingLimiter(INSTALL_WINDOWS))
    # The same limit by the moments callers made their calls (their X-Crier-Sent-At), for the stats: a 429 the
    # calls earned, not only one this process's own lag gave them.
    made: MadeMoments = field(default_factory=lambda: MadeMoments(*INSTALL_WINDOWS[0]))
    throttled_when_made: int = 0
    installs: int = 0
    consented: dict[str, list[str]] = field(default_factory=dict)  # the resource-specific permissions, by person
    conflicts: int = 0
    throttled: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # posts to the bot under way

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        external = manifest_id(self.bot_app_id)
        app = CatalogApp(catalog_id(external), external, DEFAULT_APP_NAME)
        self.catalog = {app.id: app}
        self.blocked_tenant = False
        self.blocked_users.clear()
        self.limiter.clear()
        self.made.clear()
        self.installs = self.conflicts = self.throttled = self.throttled_when_made = 0
        self.consented.clear()

    def blocked(self, aad: str) -> bool:
        return self.blocked_tenant or aad in self.blocked_users

    def policy(self) -> dict[str, Any]:
        return {"blocked": self.blocked_tenant, "users": sorted(self.blocked_users)}

    def stats(self) -> dict[str, int]:
        return {"installs": self.installs, "install_conflicts": self.conflicts, "install_throttled": self.throttled,
                "install_throttled_when_made": self.throttled_when_made,
                "installs_consenting": sum(1 for values in self.consented.values() if values)}


def parse_filter(text: str, properties: dict[str, str]) -> list[tuple[str, str]]:
    """``property eq 'value'`` clauses joined by ``and``, as (property, value); BadQuery otherwise."""
    clauses = []
    for part in _AND.split(text.strip()):
        found = _CLAUSE.fullmatch(part)
        if found is None or found.group(1).lower() not in properties:
            raise BadQuery(400, "BadRequest", f"Invalid filter clause: {text!r}.")
        clauses.append((properties[found.group(1).lower()], found.group(2)))
    return clauses


def matches(app: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    """GUIDs compare in any case and form; ``distributionMethod`` by its name."""
    return all((normalize_aad(value) or value.strip().lower()) == app[name].lower() for name, value in clauses)


def bound_app(raw: bytes) -> tuple[str, list[str]]:
    """The catalog id named by ``teamsApp@odata.bind`` (any host and base: only the path's end counts), and the
    resource-specific permissions ``consentedPermissionSet`` consents to (``permissionValue``s)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    bind = data.get("teamsApp@odata.bind") if isinstance(data, dict) else None
    found = _BIND.search(urlsplit(bind).path) if isinstance(bind, str) else None
    if found is None:
        raise BadQuery(400, "BadRequest", 'The body must be {"teamsApp@odata.bind": '
                       '"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{id}"}.')
    consented = data.get("consentedPermissionSet")
    permissions = consented.get("resourceSpecificPermissions") if isinstance(consented, dict) else None
    if consented is not None and not isinstance(permissions, list):
        raise BadQuery(400, "BadRequest", "consentedPermissionSet needs a resourceSpecificPermissions list.")
    values = []
    for permission in permissions or []:
        value = permission.get("permissionValue") if isinstance(permission, dict) else None
        kind = permission.get("permissionType") if isinstance(permission, dict) else None
        if not isinstance(value, str) or not value or not isinstance(kind, str) or kind not in PERMISSION_TYPES:
            raise BadQuery(400, "BadRequest", "Each resource-specific permission needs a permissionValue and a "
                           "permissionType of application or delegated.")
        values.append(value)
    return unquote(found.group(1)), values


class GraphInstalls(Graph):
    def routes(self) -> list[web.RouteDef]:
        installed = "/graph/v1.0/users/{user}/teamwork/installedApps"
        return [
            web.get("/graph/v1.0/appCatalogs/teamsApps", self.catalog_apps),
            web.post(installed, self.install),
            web.get(installed, self.installed_apps),
            web.get(installed + "/{installation}/chat", self.chat),
        ]

    @property
    def installs(self) -> Installs:
        return self.ctx.installs

    def _refusal(self, request: web.Request, needed=READ_INSTALLED) -> web.Response | None:
        """As Graph's Teams APIs refuse a token without the permission: 403 ``Forbidden``, "Missing role
        permissions", naming what the call needs and what the token has (not the directory's
        ``Authorization_RequestDenied``)."""
        refused = super()._refusal(request, needed)
        if refused is None or refused.status != 403:
            return refused
        return graph_error(403, "Forbidden", "Missing role permissions on the request. API requires one of "
                           f"'{', '.join(needed)}'. Roles on the request '{', '.join(sorted(self._roles(request)))}'.")

    def _context(self, path: str) -> str:
        return f"{self.ctx.base_url}/graph/v1.0/$metadata#{path}"

    def _person(self, request: web.Request) -> tuple[str, User | None]:
        """The person in the path, and their Teams user if Teams knows them; 404 when neither Teams nor the
        directory does."""
        aad = normalize_aad(request.match_info["user"])
        if aad is not None:
            user = self.ctx.store.users.get(aad)
            entry = self.ctx.directory.users.get(aad)
            if user is not None or (entry is not None and entry.deleted_at is None):
                return aad, user
        raise BadQuery(404, "NotFound", "User not found")

    # Handlers -------------------------------------------------------------------------------------

    async def catalog_apps(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request, READ_CATALOG):
            return refusal
        apps = [app.as_graph() for app in self.installs.catalog.values()]
        if "$filter" in request.query:
            try:
                clauses = parse_filter(request.query["$filter"], CATALOG_FILTER)
            except BadQuery as refused:
                return refused.response()
            apps = [app for app in apps if matches(app, clauses)]
        return json_response(200, {"@odata.context": self._context("appCatalogs/teamsApps"), "value": apps})

    async def install(self, request: web.Request) -> web.Response:
        """Read the body first: from there on nothing awaits, so the limit is judged atomically."""
        ctx, installs = self.ctx, self.installs
        raw = await request.read()
        if refusal := self._refusal(request, INSTALL):
            if refusal.status == 429:
                installs.throttled += 1
            return refusal
        if ctx.config.limits:  # judged by arrival, as Graph does
            now, scope = time.monotonic(), ctx.settings.tenant_id
            made = made_at(request.headers.get(SENT_AT_HEADER), now)
            wait = installs.limiter.wait_time(scope, now)
            if wait > 0:
                installs.throttled += 1
                installs.throttled_when_made += installs.made.over(scope, made)
                return graph_error(429, "TooManyRequests", "Too many requests for this application in this tenant.",
                                   {"Retry-After": str(retry_after_header(wait))})
            installs.limiter.record(scope, now)
            installs.made.record(scope, made)
        try:
            wanted, consented = bound_app(raw)
            if consented and not set(AND_CONSENT) & self._roles(request):
                raise BadQuery(403, "Forbidden", "Missing role permissions on the request: consenting to "
                               "resource-specific permissions while installing needs one of "
                               f"'{', '.join(AND_CONSENT)}'.")
            aad, user = self._person(request)
            app = installs.catalog.get(normalize_aad(wanted) or "")
            if app is None:
                raise BadQuery(404, "NotFound", f"The app '{wanted}' was not found in the organization's app catalog.")
            if installs.blocked(aad):
                raise BadQuery(403, "Forbidden", "App is blocked by app permission policy.")
            if user is not None and user.installed and not user.uninstalled:
                installs.conflicts += 1
                raise BadQuery(409, "Conflict", "App is already installed.")
        except BadQuery as refused:
            return refused.response()
        if user is None:  # in the directory, new to Teams
            name = ctx.directory.users[aad].properties.get("displayName")
            user = ctx.store.upsert_user(aad, name=name if isinstance(name, str) else None,
                                         tenant_id=ctx.settings.tenant_id, installed=False)
        user.installed, user.uninstalled = True, False
        installs.installs += 1
        installs.consented[aad] = sorted(consented)
        conversation_id = ctx.store.conversation_for(user)  # what Teams' install activities carry
        ctx.store.open_chat(user, chat_id(aad, ctx.settings.app_id))  # and Graph's name for the same chat
        self._tell_the_bot(install_activities(user, conversation_id, ctx.service_url, ctx.settings.app_id))
        return empty_response(201)

    def _tell_the_bot(self, activities: list[dict[str, Any]]) -> None:
        """Posts the activities one after the other in the background; the bot's answer changes nothing."""
        endpoint = self.ctx.config.bot_endpoint

        async def post() -> None:
            for activity in activities:
                try:
                    status, _ = await self.ctx.bot.post(endpoint, activity)
                except Exception:  # noqa: BLE001 - Graph has answered already; the bot's trouble is its own
                    logger.exception("posting an installation to the bot failed")
                    return
                if not isinstance(status, int) or status >= 300:
                    logger.warning("the bot answered %s to a %s", status, activity["type"])

        task = asyncio.get_running_loop().create_task(post())
        self.installs.tasks.add(task)
        task.add_done_callback(self.installs.tasks.discard)

    def _installed(self, aad: str, user: User | None) -> list[CatalogApp]:
        """The apps the person has: every catalog app while the bot is installed for them, else none."""
        if user is None or not user.installed or user.uninstalled:
            return []
        return list(self.installs.catalog.values())

    async def installed_apps(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request, READ_INSTALLED):
            return refusal
        try:
            aad, user = self._person(request)
            expand = [name.strip() for name in request.query.get("$expand", "").split(",") if name.strip()]
            if any(name not in EXPANDABLE for name in expand):
                raise BadQuery(400, "BadRequest", f"Could not expand {request.query['$expand']!r}: teamsApp only.")
            clauses = (parse_filter(request.query["$filter"], INSTALLED_FILTER)
                       if "$filter" in request.query else [])
        except BadQuery as refused:
            return refused.response()
        value = []
        for app in self._installed(aad, user):
            if matches(app.as_graph(), clauses):
                entry: dict[str, Any] = {"id": installation_id(aad, app.id)}
                if expand:
                    entry["teamsApp"] = app.as_graph()
                value.append(entry)
        return json_response(200, {"@odata.context": self._context(f"users('{aad}')/teamwork/installedApps"),
                                   "value": value})

    async def chat(self, request: web.Request) -> web.Response:
        """The one-to-one chat of the person and the bot, by Graph's id for it, which the Bot Connector takes."""
        if refusal := self._refusal(request, READ_INSTALLED):
            return refusal
        try:
            aad, user = self._person(request)
        except BadQuery as refused:
            return refused.response()
        wanted = request.match_info["installation"]
        if user is None or wanted not in {installation_id(aad, app.id) for app in self._installed(aad, user)}:
            return graph_error(404, "NotFound", f"The installation '{wanted}' was not found for this user.")
        chat = self.ctx.store.open_chat(user, chat_id(aad, self.ctx.settings.app_id))
        return json_response(200, {"@odata.context": self._context("chats/$entity"), "id": chat, "chatType": "oneOnOne",
                                   "tenantId": user.tenant_id, "topic": None})


# --- the control API's part -----------------------------------------------------------------------


class InstallsControl:
    """``/_emulator/graph/catalog`` and ``/_emulator/graph/install-policy``."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_emulator/graph/catalog", self.list_catalog),
            web.post("/_emulator/graph/catalog", self.set_catalog),
            web.post("/_emulator/graph/install-policy", self.set_policy),
        ]

    async def list_catalog(self, request: web.Request) -> web.Response:
        return json_response(200, {"apps": [app.as_graph() for app in self.ctx.installs.catalog.values()]})

    async def set_catalog(self, request: web.Request) -> web.Response:
        """``{"apps": [{"id"?, "externalId", "displayName"}]}`` replaces the catalog; every entry is checked
        before any is kept. An app without an id gets a new one."""
        try:
            data = await json_body(request)
            entries = data.get("apps") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ConfigError('the body must be {"apps": [...]}')
            apps: dict[str, CatalogApp] = {}
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise ConfigError(f"apps[{index}] must be an object")
                app_id = str(uuid.uuid4()) if entry.get("id") is None else normalize_aad(entry["id"])
                if app_id is None:
                    raise ConfigError(f"apps[{index}].id must be a GUID")
                external = normalize_aad(entry.get("externalId"))
                if external is None:
                    raise ConfigError(f"apps[{index}].externalId must be a GUID")
                name = display_name(entry.get("displayName"), f"apps[{index}].displayName")
                if app_id in apps or any(app.external_id == external for app in apps.values()):
                    raise ConfigError(f"apps[{index}] has the id or externalId of an app before it")
                apps[app_id] = CatalogApp(app_id, external, name)
        except ConfigError as exc:
            return control_error(400, str(exc))
        self.ctx.installs.catalog = apps
        return await self.list_catalog(request)

    async def set_policy(self, request: web.Request) -> web.Response:
        """``{"blocked": bool, "users"?: [GUID...]}``: without users the whole tenant (unblocking it unblocks
        everyone), with users only those. Answers the policy."""
        try:
            data = await json_body(request)
            if not isinstance(data, dict) or not isinstance(data.get("blocked"), bool):
                raise ConfigError('the body must be {"blocked": true or false, "users"?: [...]}')
            users = None if data.get("users") is None else guid_list(data["users"], "users")
        except ConfigError as exc:
            return control_error(400, str(exc))
        installs, blocked = self.ctx.installs, data["blocked"]
        if users is None:
            installs.blocked_tenant = blocked
            if not blocked:
                installs.blocked_users.clear()
        elif blocked:
            installs.blocked_users.update(users)
        else:
            installs.blocked_users.difference_update(users)
        return json_response(200, installs.policy())
