"""Installing Crier's app for a person who lacks it, through Microsoft Graph (the application permissions
``TeamsAppInstallation.ReadWriteSelfForUser.All`` and ``AppCatalog.Read.All``): the app's id in the organisation's catalog (found by the
manifest's id), the install (409: the person has it already), and the one-to-one chat it makes, whose id is
the conversation to send in. Installs are paced under Graph's limit for them (``INSTALLS_PER_SECOND`` a
tenant, counted in Redis so every worker shares it). Every refusal becomes ``InstallRefused``: a code for the
delivery's record and, in plain words, what an administrator does about it.

Nothing calls it yet: a campaign installing the app for the people it reaches needs its own paced task outside
the deliver task (an install can outlast a delivery's lease), and is still to be built."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import redis

from .app_package import app_id
from .graph import GraphClient, GraphError, graph
from .pacing import pacer

INSTALL_PERMISSION = "TeamsAppInstallation.ReadWriteSelfForUser.All"
CATALOG_PERMISSION = "AppCatalog.Read.All"  # to find the app's id in the organisation's catalog
# Graph allows about 30 installation calls a second per app and tenant: a margin under it.
INSTALLS_PER_SECOND = 27
CATALOG_SECONDS = 600.0  # how long the app's catalog id is kept


class InstallRefused(Exception):
    """``code``: AppConsentMissing, AppNotInCatalog, AppBlockedByPolicy, UserNotFound or GraphUnavailable (the
    last one passes; try again later). ``str()`` says what to do."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


@dataclass(frozen=True)
class Installed:
    conversation_id: str  # the one-to-one chat with the bot
    by_crier: bool  # False: the person had the app already (Graph answered 409)


def _consent(error: GraphError, permission: str = INSTALL_PERMISSION) -> InstallRefused:
    return InstallRefused("AppConsentMissing", (
        f"Microsoft Graph refused ({error.code}): give the app registration the application permission "
        f"{permission} and have an administrator grant consent (docs/going-live.md)."))


def _unavailable(error: GraphError) -> InstallRefused:
    return InstallRefused("GraphUnavailable", error.plain(), transient=True)


class InstallPace:
    """At most ``per_second`` installs a second in a tenant, whatever the number of workers: a count per second
    in Redis; a call past it waits for the next second."""

    def __init__(self, client: redis.Redis | None = None, per_second: int = INSTALLS_PER_SECOND,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client, self.per_second, self.clock, self.sleep = client, per_second, clock, sleep

    @property
    def client(self) -> redis.Redis:
        return self._client or pacer.client

    def wait(self, tenant_id: str) -> None:
        while True:
            now = self.clock()
            second = int(now)
            key = f"crier:graph-installs:{tenant_id}:{second}"
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, 5)
            count, _ = pipe.execute()
            if count <= self.per_second:
                return
            self.sleep(second + 1 - now)


class AppInstaller:
    def __init__(self, client: GraphClient = graph, pace: InstallPace | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.pace, self.clock = client, pace or InstallPace(), clock
        self._catalog: tuple[str, float] | None = None  # (catalog id, when it was read)

    def catalog_id(self) -> str:
        """The app's id in the organisation's catalog, read at most every ``CATALOG_SECONDS``."""
        if self._catalog is not None and self.clock() - self._catalog[1] < CATALOG_SECONDS:
            return self._catalog[0]
        url = self.client.url("/appCatalogs/teamsApps", {"$filter": f"externalId eq '{app_id()}'"})
        try:
            found = self.client.get(url, needs=CATALOG_PERMISSION).get("value") or []
        except GraphError as error:
            raise _consent(error, CATALOG_PERMISSION) if error.status in (401, 403) else _unavailable(error) from error
        if not found or not isinstance(found[0], dict) or not found[0].get("id"):
            raise InstallRefused("AppNotInCatalog", (
                f"The organisation's app catalog has no app with the id {app_id()}: upload the Teams app package "
                "(python manage.py teams_app_package) in the Teams admin center (docs/going-live.md)."))
        self._catalog = (str(found[0]["id"]), self.clock())
        return self._catalog[0]

    def install(self, *, aad_object_id: str, tenant_id: str) -> Installed:
        """Installs the app for the person (unless they have it) and returns their chat with the bot."""
        catalog = self.catalog_id()
        user = quote(str(aad_object_id), safe="")
        self.pace.wait(tenant_id)
        binding = f"{self.client.url('/appCatalogs/teamsApps/')}{quote(catalog, safe='')}"
        by_crier = True
        try:
            self.client.post(self.client.url(f"/users/{user}/teamwork/installedApps"),
                             {"teamsApp@odata.bind": binding}, needs=INSTALL_PERMISSION)
        except GraphError as error:
            if error.status == 409:
                by_crier = False
            else:
                raise self._refused(error, aad_object_id) from error
        return Installed(conversation_id=self._chat(user, catalog), by_crier=by_crier)

    def _chat(self, user: str, catalog: str) -> str:
        try:
            listed = self.client.get(self.client.url(f"/users/{user}/teamwork/installedApps", {
                "$expand": "teamsApp", "$filter": f"teamsApp/id eq '{catalog}'"}), needs=INSTALL_PERMISSION)
            installations = [entry for entry in listed.get("value") or []
                             if isinstance(entry, dict) and entry.get("id")]
            if not installations:
                raise InstallRefused("GraphUnavailable", "Graph did not list the installation it made; try again.",
                                     transient=True)
            installation = quote(str(installations[0]["id"]), safe="")
            chat = self.client.get(self.client.url(f"/users/{user}/teamwork/installedApps/{installation}/chat"),
                                   needs=INSTALL_PERMISSION)
        except GraphError as error:
            raise self._refused(error, user) from error
        if not chat.get("id"):
            raise InstallRefused("GraphUnavailable", "Graph gave the installation no chat; try again.", transient=True)
        return str(chat["id"])

    @staticmethod
    def _refused(error: GraphError, who: str) -> InstallRefused:
        if error.status == 403 and error.code == "Authorization_RequestDenied" or error.status == 401:
            return _consent(error)
        if error.status == 403:
            return InstallRefused("AppBlockedByPolicy", (
                "A Teams app permission policy keeps the app from this person: allow it in the Teams admin center "
                f"(Teams apps → Permission policies) for the policy that applies to them. Graph said: {error.message}"))
        if error.status == 404:
            if "app" in error.message.lower() and "user" not in error.message.lower():
                return InstallRefused("AppNotInCatalog", f"Graph no longer finds the app in the catalog: {error.message}")
            return InstallRefused("UserNotFound", f"Entra ID has no user {who}: the account was removed.")
        return _unavailable(error)
