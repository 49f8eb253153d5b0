"""Installing Crier's app for a person who lacks it, through Microsoft Graph (the application permissions
``TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All`` and ``AppCatalog.Read.All``): the app's id in the
organisation's catalog (found by the manifest's id), then the install (409: the person has it already), consenting
on the way to the resource-specific permission the app declares (read receipts), as a person installing it
themselves would. Every refusal becomes
``InstallRefused``: a code for the delivery's record and, in plain words, what an administrator does about it.

Only the install is asked of Graph: Teams tells the bot of the one-to-one chat it opens (the installation's
``conversationUpdate``), and a send that finds none creates it, as for everyone else; Graph's route to the chat
(two more calls a person) would spend the budget Graph gives Teams calls. Installs are paced under Graph's limit
for them (``InstallPace``); one installer at a time makes them (``delivery.installing``), so the pace is its own."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import quote

from django.conf import settings

from .app_package import READ_RECEIPTS, app_id
from .graph import GraphClient, GraphError

# The least permission that installs an app asking for resource-specific permissions and consents to them.
INSTALL_PERMISSION = "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"
CATALOG_PERMISSION = "AppCatalog.Read.All"  # to find the app's id in the organisation's catalog
# How Graph's Teams APIs word a refusal for want of an application permission (403 "Forbidden"); a policy's
# refusal is a 403 too.
MISSING_PERMISSION = "missing role permissions"
GRAPH_INSTALL_LIMIT = 30  # calls a second for each app and tenant, as Microsoft publishes it
CATALOG_SECONDS = 600.0  # how long the app's catalog id is kept
CATALOG_REFUSED_SECONDS = 30.0  # and why it could not be read
CREDENTIALS = "GraphCredentialsRefused"  # Entra ID or Graph refused Crier's own credentials
RENEW_SECONDS = 60.0
# For installs: a 429 or a 503 is waited for and tried again twice, briefly (the installer tries again later).
install_graph = GraphClient(attempts=3, max_wait=10.0)


class InstallRefused(Exception):
    """``code``: AppConsentMissing, GraphCredentialsRefused, AppNotInCatalog, AppBlockedByPolicy, UserNotFound or
    GraphUnavailable (the last one passes; try again later). ``str()`` says what to do."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


def _consent(error: GraphError, permission: str = INSTALL_PERMISSION) -> InstallRefused:
    return InstallRefused("AppConsentMissing", (
        f"Microsoft Graph refused ({error.code}): give the app registration the application permission "
        f"{permission} and have an administrator grant consent (docs/going-live.md)."))


def _unavailable(error: GraphError) -> InstallRefused:
    return InstallRefused("GraphUnavailable", error.plain(), transient=True)


class _StaleCatalog(Exception):
    """Graph no longer knows the app by the catalog id Crier kept."""

    def __init__(self, refused: InstallRefused) -> None:
        super().__init__(refused.message)
        self.refused = refused


class InstallPace:
    """Calls spaced evenly, ``per_second`` a second at most in each tenant (``GRAPH_INSTALLS_PER_SECOND`` by
    default), for the threads of one process: each call takes the next free moment and sleeps until it. A thread
    that wakes late would then go together with those due after it: a log of the moments calls went keeps any
    trailing second to ``most_in_a_second`` calls (one under Graph's limit), whatever the lateness."""

    def __init__(self, per_second: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, *, most_in_a_second: int = GRAPH_INSTALL_LIMIT - 1,
                 setting: str = "GRAPH_INSTALLS_PER_SECOND") -> None:
        """``setting``: the setting that gives the pace when ``per_second`` does not."""
        self.per_second, self.clock, self.sleep, self.most = per_second, clock, sleep, most_in_a_second
        self.setting = setting
        self._next: dict[str, float] = {}
        self._went: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, tenant_id: str) -> None:
        rate = self.per_second or getattr(settings, self.setting)
        with self._lock:
            now = self.clock()
            start = max(now, self._next.get(tenant_id, 0.0))
            self._next[tenant_id] = start + 1.0 / rate
        if start > now:
            self.sleep(start - now)
        while True:
            with self._lock:
                now = self.clock()
                went = self._went.setdefault(tenant_id, deque())
                while went and went[0] <= now - 1.0:
                    went.popleft()
                if len(went) < self.most:
                    went.append(now)
                    return
                free_at = went[0] + 1.0
            self.sleep(max(0.001, free_at - now))


class AppInstaller:
    def __init__(self, client: GraphClient = install_graph, pace: InstallPace | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.pace, self.clock = client, pace or InstallPace(), clock
        self._catalog: tuple[str, float] | None = None  # (catalog id, when it was read)
        self._catalog_refused: tuple[InstallRefused, float] | None = None  # (why it could not be read, when)
        self._catalog_lock = threading.Lock()
        self._renewed_at = -RENEW_SECONDS  # when a refused consent last had the token renewed

    def catalog_id(self) -> str:
        """The app's id in the organisation's catalog, read at most every ``CATALOG_SECONDS``; a refusal is kept
        ``CATALOG_REFUSED_SECONDS``, so that the installer's threads do not each ask again in turn."""
        with self._catalog_lock:
            now = self.clock()
            if self._catalog is not None and now - self._catalog[1] < CATALOG_SECONDS:
                return self._catalog[0]
            if self._catalog_refused is not None and now - self._catalog_refused[1] < CATALOG_REFUSED_SECONDS:
                kept = self._catalog_refused[0]
                raise InstallRefused(kept.code, kept.message, transient=kept.transient)
            try:
                self._catalog = (self._catalog_read(), self.clock())
            except InstallRefused as refused:
                self._catalog_refused = (refused, self.clock())
                raise
            self._catalog_refused = None
            return self._catalog[0]

    def _catalog_read(self) -> str:
        url = self.client.url("/appCatalogs/teamsApps", {"$filter": f"externalId eq '{app_id()}'"})
        try:
            found = self.client.get(url, needs=CATALOG_PERMISSION).get("value") or []
        except GraphError as error:
            raise self._refused(error, "", permission=CATALOG_PERMISSION) from error
        if not found or not isinstance(found[0], dict) or not found[0].get("id"):
            raise InstallRefused("AppNotInCatalog", (
                f"The organisation's app catalog has no app with the id {app_id()}: upload the Teams app package "
                "(python manage.py teams_app_package) in the Teams admin center (docs/going-live.md)."))
        return str(found[0]["id"])

    def forget_catalog(self) -> None:
        """The app's catalog id is read again at the next install (the app was taken out, or put back)."""
        with self._catalog_lock:
            self._catalog = self._catalog_refused = None

    def install(self, *, aad_object_id: str, tenant_id: str) -> bool:
        """Installs the app for the person: True when Crier did, False when they had it already (409). Asked once
        more: with the catalog read again, when Graph no longer knows the app's catalog id (uploaded again, under
        a new id); and with a new token, when consent is missing (consent granted since the token was issued
        shows only in a new one; at most every ``RENEW_SECONDS``)."""
        if not settings.GRAPH_AUTHORITY:
            raise InstallRefused(CREDENTIALS, "GRAPH_AUTHORITY is empty: set BOT_TENANT_ID (or GRAPH_AUTHORITY) to the "
                                 "organisation's tenant, whose Graph Crier installs the app through (docs/configuration.md).")
        try:
            return self._install(str(aad_object_id), tenant_id)
        except _StaleCatalog:
            self.forget_catalog()
        except InstallRefused as refused:
            if refused.code != "AppConsentMissing" or not self._renewal_due():
                raise
            self.client.tokens.invalidate()
            self.forget_catalog()
        try:
            return self._install(str(aad_object_id), tenant_id)
        except _StaleCatalog as stale:
            raise stale.refused from stale

    def _renewal_due(self) -> bool:
        with self._catalog_lock:
            if self.clock() - self._renewed_at < RENEW_SECONDS:
                return False
            self._renewed_at = self.clock()
            return True

    def _install(self, aad_object_id: str, tenant_id: str) -> bool:
        catalog = self.catalog_id()
        user = quote(aad_object_id, safe="")
        binding = f"{self.client.url('/appCatalogs/teamsApps/')}{quote(catalog, safe='')}"
        self.pace.wait(tenant_id.lower())  # one tenant, however its id is written
        try:
            self.client.post(self.client.url(f"/users/{user}/teamwork/installedApps"), {
                "teamsApp@odata.bind": binding,
                # The app package's resource-specific permission (bots.app_package), granted with the install.
                "consentedPermissionSet": {"resourceSpecificPermissions": [
                    {"permissionValue": READ_RECEIPTS, "permissionType": "application"}]},
            }, needs=INSTALL_PERMISSION)
        except GraphError as error:
            if error.status == 409:
                return False
            refused = self._refused(error, aad_object_id)
            if refused.code == "AppNotInCatalog":
                raise _StaleCatalog(refused) from error
            raise refused from error
        return True

    @staticmethod
    def _refused(error: GraphError, who: str, *, permission: str = "") -> InstallRefused:
        if error.status == 401:  # the credentials themselves (a secret expired, a wrong tenant)
            return InstallRefused(CREDENTIALS, error.plain())
        if error.status == 403 and (
                permission or error.code == "Authorization_RequestDenied" or MISSING_PERMISSION in error.message.lower()):
            return _consent(error, permission or INSTALL_PERMISSION)
        if error.status == 403:
            return InstallRefused("AppBlockedByPolicy", (
                "A Teams app permission policy keeps the app from this person: allow it in the Teams admin center "
                f"(Teams apps → Permission policies) for the policy that applies to them. Graph said: {error.message}"))
        if error.status == 404 and not permission:
            if "app" in error.message.lower() and "user" not in error.message.lower():
                return InstallRefused("AppNotInCatalog", f"Graph no longer finds the app in the catalog: {error.message}")
            return InstallRefused("UserNotFound", f"Entra ID has no user {who}: the account was removed.")
        return _unavailable(error)
