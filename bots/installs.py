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
CATALOG_SECONDS = 600.0  # how long the app's catalog id is kept
# For installs: a 429 or a 503 is waited for and tried again twice, briefly (the installer tries again later).
install_graph = GraphClient(attempts=3, max_wait=10.0)


class InstallRefused(Exception):
    """``code``: AppConsentMissing, AppNotInCatalog, AppBlockedByPolicy, UserNotFound or GraphUnavailable (the
    last one passes; try again later). ``str()`` says what to do."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


def _consent(error: GraphError, permission: str = INSTALL_PERMISSION) -> InstallRefused:
    return InstallRefused("AppConsentMissing", (
        f"Microsoft Graph refused ({error.code}): give the app registration the application permission "
        f"{permission} and have an administrator grant consent (docs/going-live.md)."))


def _unavailable(error: GraphError) -> InstallRefused:
    return InstallRefused("GraphUnavailable", error.plain(), transient=True)


class InstallPace:
    """Calls spaced evenly, ``per_second`` a second at most in each tenant (``GRAPH_INSTALLS_PER_SECOND`` by
    default), for the threads of one process: each call takes the next free moment and sleeps until it."""

    def __init__(self, per_second: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_second, self.clock, self.sleep = per_second, clock, sleep
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, tenant_id: str) -> None:
        rate = self.per_second or settings.GRAPH_INSTALLS_PER_SECOND
        with self._lock:
            now = self.clock()
            start = max(now, self._next.get(tenant_id, 0.0))
            self._next[tenant_id] = start + 1.0 / rate
        if start > now:
            self.sleep(start - now)


class AppInstaller:
    def __init__(self, client: GraphClient = install_graph, pace: InstallPace | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.pace, self.clock = client, pace or InstallPace(), clock
        self._catalog: tuple[str, float] | None = None  # (catalog id, when it was read)
        self._catalog_lock = threading.Lock()

    def catalog_id(self) -> str:
        """The app's id in the organisation's catalog, read at most every ``CATALOG_SECONDS``."""
        with self._catalog_lock:
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

    def forget_catalog(self) -> None:
        """The app's catalog id is read again at the next install (the app was taken out, or put back)."""
        with self._catalog_lock:
            self._catalog = None

    def install(self, *, aad_object_id: str, tenant_id: str) -> bool:
        """Installs the app for the person: True when Crier did, False when they had it already (409)."""
        catalog = self.catalog_id()
        user = quote(str(aad_object_id), safe="")
        binding = f"{self.client.url('/appCatalogs/teamsApps/')}{quote(catalog, safe='')}"
        self.pace.wait(tenant_id.lower())  # one tenant, however its id is written
        try:
            self.client.post(self.client.url(f"/users/{user}/teamwork/installedApps"), {
                "teamsApp@odata.bind": binding,
                # The app package's resource-specific permission (bots.app_package), granted with the install.
                "consentedPermissionSet": {"resourceSpecificPermissions": [
                    {"permissionValue": READ_RECEIPTS, "permissionType": "Application"}]},
            }, needs=INSTALL_PERMISSION)
        except GraphError as error:
            if error.status == 409:
                return False
            refused = self._refused(error, str(aad_object_id))
            if refused.code == "AppNotInCatalog":
                self.forget_catalog()
            raise refused from error
        return True

    @staticmethod
    def _refused(error: GraphError, who: str) -> InstallRefused:
        if error.status == 401 or error.status == 403 and (
                error.code == "Authorization_RequestDenied" or MISSING_PERMISSION in error.message.lower()):
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
