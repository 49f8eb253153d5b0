"""Installing the app for a person who lacks it, through the emulator's Microsoft Graph (real HTTPS and
tokens): after it the bot reaches them as anyone else; every refusal has its code and what to do; installs
are paced under Graph's limit for them."""

from __future__ import annotations

import json
import uuid

import pytest

from bots.addresses import address_of
from bots.graph import GraphError
from bots.installs import AppInstaller, InstallPace, InstallRefused
from bots.schema import message_activity
from bots.tokens import graph_token_provider
from bots.transport import TeamsTransport
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(teams):
    """Someone in the directory who never installed the app."""
    aad = str(uuid.uuid4())
    teams.client.graph_users([{"id": aad, "displayName": "Nova Newcomer"}])
    teams.client.register_users([{"aad_object_id": aad, "name": "Nova Newcomer", "installed": False}])
    teams.client.config(auto_install=False)
    return aad


def send_to(aad: str) -> str:
    """A send as delivery makes it: CreateConversation with the person's Entra id, then the message."""
    address = address_of(aad_object_id=aad, tenant_id=factories.TENANT, stored=("", "", "", ""))
    return TeamsTransport().send(address=address, activity_json=json.dumps(message_activity(text="Hi")).encode())


def test_it_installs_the_app_after_which_the_bot_reaches_the_person(teams, person):
    assert AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT) is True

    assert send_to(person).activity_id
    assert teams.client.user(person)["installed"] is True
    assert teams.client.graph_stats()["installs"] == 1


def test_it_consents_to_the_read_receipt_permission_the_app_package_declares(teams, person):
    AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT)

    assert teams.client.graph_stats()["installs_consenting"] == 1


def test_a_person_who_has_the_app_already_is_not_installed_again(teams, person):
    assert AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT) is True
    assert AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT) is False

    assert teams.client.graph_stats()["install_conflicts"] == 1


@pytest.mark.parametrize("setup, code, advice", [
    (lambda emu: emu.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All"]), "AppConsentMissing",
     "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"),
    # installing alone is not enough: the app asks for a resource-specific permission, consented at install
    (lambda emu: emu.graph_config(permissions=["TeamsAppInstallation.ReadWriteSelfForUser.All", "AppCatalog.Read.All"]),
     "AppConsentMissing", "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"),
    (lambda emu: emu.graph_config(permissions=["TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"]),
     "AppConsentMissing", "AppCatalog.Read.All"),
    (lambda emu: emu.graph_catalog([]), "AppNotInCatalog", "upload the Teams app package"),
    (lambda emu: emu.graph_install_policy(True), "AppBlockedByPolicy", "Permission policies"),
])
def test_each_refusal_has_its_code_and_what_to_do(teams, person, setup, code, advice):
    setup(teams.client)
    graph_token_provider.invalidate()  # consent changes with the next token

    with pytest.raises(InstallRefused) as refused:
        AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT)

    assert refused.value.code == code and advice in refused.value.message
    assert refused.value.transient is False
    assert teams.client.user(person)["installed"] is False


def test_a_person_entra_id_does_not_know_is_said_so(teams):
    unknown = str(uuid.uuid4())
    with pytest.raises(InstallRefused) as refused:
        AppInstaller().install(aad_object_id=unknown, tenant_id=factories.TENANT)
    assert (refused.value.code, refused.value.message) == (
        "UserNotFound", f"Entra ID has no user {unknown}: the account was removed.")


def test_the_apps_catalog_id_is_read_once_for_many_installs(teams, person):
    installer = AppInstaller()
    other = str(uuid.uuid4())
    teams.client.graph_users([{"id": other, "displayName": "Otto Other"}])
    before = teams.client.graph_stats()["requests"]

    installer.install(aad_object_id=person, tenant_id=factories.TENANT)
    installer.install(aad_object_id=other, tenant_id=factories.TENANT)

    # one catalog read, then one call for each person: the install
    assert teams.client.graph_stats()["requests"] - before == 1 + 2


def test_an_app_taken_out_of_the_catalog_and_put_back_is_looked_up_again(teams, person):
    clock = Clock(1000.0)
    installer = AppInstaller(clock=clock)
    apps = teams.client.graph_catalog_list()
    installer.catalog_id()
    teams.client.graph_catalog([])

    with pytest.raises(InstallRefused) as refused:
        installer.install(aad_object_id=person, tenant_id=factories.TENANT)
    assert refused.value.code == "AppNotInCatalog"

    clock.now += 30.0  # the refusal is kept half a minute
    # uploaded again: a new id in the catalog
    teams.client.graph_catalog([{"id": str(uuid.uuid4()), "externalId": app["externalId"],
                                 "displayName": app["displayName"]} for app in apps])
    assert installer.install(aad_object_id=person, tenant_id=factories.TENANT) is True


class Clock:
    def __init__(self, now: float, *, sleeps: bool = False) -> None:
        self.now, self.slept, self.sleeps = now, [], sleeps

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        if self.sleeps:
            self.now += seconds


def test_installs_are_spaced_evenly_per_tenant_for_every_thread():
    clock = Clock(1000.0)
    pace = InstallPace(per_second=4, clock=clock, sleep=clock.sleep)

    for _ in range(3):
        pace.wait("tenant-a")
    pace.wait("tenant-b")  # another tenant has its own pace

    # each call takes the next free moment, a quarter of a second after the one before
    assert clock.slept == [0.25, 0.5]


def test_a_call_whose_moment_came_waits_while_the_last_second_holds_the_pace_of_calls():
    from collections import deque

    clock = Clock(1000.0, sleeps=True)
    pace = InstallPace(per_second=4, clock=clock, sleep=clock.sleep, most_in_a_second=4)
    # four threads that took earlier moments woke late and went together, just now
    pace._went["tenant"] = deque([999.5, 999.6, 999.7, 999.8])

    pace.wait("tenant")

    # its own moment had come, but a fifth call within a second would be one too many: it waits for 999.5 to leave
    assert round(clock.now, 3) == 1000.5 and list(pace._went["tenant"]) == [999.6, 999.7, 999.8, clock.now]


@pytest.mark.parametrize("status, code, message, refused, transient, says", [
    (401, "InvalidAuthenticationToken", "Access token validation failure.", "GraphCredentialsRefused", False,
     "Entra ID or Microsoft Graph refused Crier's credentials (InvalidAuthenticationToken): check BOT_APP_ID, "
     "BOT_APP_PASSWORD and GRAPH_AUTHORITY. Access token validation failure."),
    (403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", "AppConsentMissing",
     False, "Microsoft Graph refused (Authorization_RequestDenied): give the app registration the application "
     "permission TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All and have an administrator grant consent "
     "(docs/going-live.md)."),
    (403, "Forbidden", "Missing role permissions on the request. API requires one of 'TeamsAppInstallation...'.",
     "AppConsentMissing", False, "Microsoft Graph refused (Forbidden): give the app registration the application "
     "permission TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All and have an administrator grant consent "
     "(docs/going-live.md)."),
    (403, "Forbidden", "App is blocked by app permission policy.", "AppBlockedByPolicy", False,
     "A Teams app permission policy keeps the app from this person: allow it in the Teams admin center (Teams apps "
     "→ Permission policies) for the policy that applies to them. Graph said: App is blocked by app permission "
     "policy."),
    (404, "NotFound", "The App 'x' was not found in the organization's app catalog.", "AppNotInCatalog", False,
     "Graph no longer finds the app in the catalog: The App 'x' was not found in the organization's app catalog."),
    (404, "NotFound", "The User 'x' was not found for this app.", "UserNotFound", False,
     "Entra ID has no user someone: the account was removed."),
    (503, "ServiceUnavailable", "Try later.", "GraphUnavailable", True,
     "Microsoft Graph answered 503 ServiceUnavailable: Try later."),
    (None, "Timeout", "No answer.", "GraphUnavailable", True, "Microsoft Graph could not be reached (Timeout): No answer."),
])
def test_each_answer_of_graph_to_an_install_means_one_refusal_saying_what_to_do(
        status, code, message, refused, transient, says):
    reason = AppInstaller._refused(GraphError(status=status, code=code, message=message), "someone")

    assert (reason.code, reason.transient, reason.message, str(reason)) == (refused, transient, says, says)


class FakeGraph:
    """Answers the catalog's GET with what it is given (a dict, or a GraphError to raise) and counts the calls."""

    def __init__(self, *answers) -> None:
        self.answers, self.calls = list(answers), []

    def url(self, path, params=None):
        from urllib.parse import urlencode

        return f"https://graph.example/v1.0{path}" + (f"?{urlencode(params)}" if params else "")

    def get(self, url, *, needs="", headers=None):
        self.calls.append((url, needs))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_catalog_id_is_kept_ten_minutes_then_read_again():
    clock = Clock(1000.0)
    client = FakeGraph({"value": [{"id": "cat-1"}]}, {"value": [{"id": "cat-2"}]})
    installer = AppInstaller(client=client, clock=clock)

    assert installer.catalog_id() == "cat-1"
    clock.now += 599.0
    assert installer.catalog_id() == "cat-1" and len(client.calls) == 1
    clock.now += 1.0
    assert installer.catalog_id() == "cat-2" and len(client.calls) == 2
    from urllib.parse import parse_qs, urlsplit

    from bots.app_package import app_id

    url, needs = client.calls[0]
    assert needs == "AppCatalog.Read.All" and urlsplit(url).path == "/v1.0/appCatalogs/teamsApps"
    assert parse_qs(urlsplit(url).query) == {"$filter": [f"externalId eq '{app_id()}'"]}


@pytest.mark.parametrize("answer, code, says", [
    (GraphError(status=403, code="Forbidden", message="Missing role permissions"), "AppConsentMissing",
     "Microsoft Graph refused (Forbidden): give the app registration the application permission AppCatalog.Read.All "
     "and have an administrator grant consent (docs/going-live.md)."),
    (GraphError(status=401, code="InvalidAuthenticationToken", message=""), "GraphCredentialsRefused",
     "Entra ID or Microsoft Graph refused Crier's credentials (InvalidAuthenticationToken): check BOT_APP_ID, "
     "BOT_APP_PASSWORD and GRAPH_AUTHORITY. "),
    (GraphError(status=503, code="ServiceUnavailable", message="Later."), "GraphUnavailable",
     "Microsoft Graph answered 503 ServiceUnavailable: Later."),
    ({"value": []}, "AppNotInCatalog", None),
    ({"value": ["not an app"]}, "AppNotInCatalog", None),
    ({"value": [{"displayName": "no id"}]}, "AppNotInCatalog", None),
])
def test_a_catalog_that_cannot_be_read_or_lacks_the_app_says_what_to_do(answer, code, says):
    from bots.app_package import app_id

    with pytest.raises(InstallRefused) as refused:
        AppInstaller(client=FakeGraph(answer)).catalog_id()

    assert refused.value.code == code
    assert refused.value.message == (says or (
        f"The organisation's app catalog has no app with the id {app_id()}: upload the Teams app package "
        "(python manage.py teams_app_package) in the Teams admin center (docs/going-live.md)."))


def test_a_catalog_that_could_not_be_read_is_not_asked_again_by_every_thread_at_once():
    clock = Clock(1000.0)
    client = FakeGraph(GraphError(status=503, code="ServiceUnavailable", message="Later."), {"value": [{"id": "c"}]})
    installer = AppInstaller(client=client, clock=clock)

    refusals = []
    for _ in range(3):
        with pytest.raises(InstallRefused) as refused:
            installer.catalog_id()
        refusals.append((refused.value.code, refused.value.message, refused.value.transient))
    assert len(client.calls) == 1
    assert refusals == [("GraphUnavailable", "Microsoft Graph answered 503 ServiceUnavailable: Later.", True)] * 3
    clock.now += 30.0
    assert installer.catalog_id() == "c" and len(client.calls) == 2


def test_an_app_uploaded_again_under_a_new_catalog_id_is_installed_at_once(teams, person):
    installer = AppInstaller()
    installer.catalog_id()
    [app] = teams.client.graph_catalog_list()
    teams.client.graph_catalog([{"id": str(uuid.uuid4()), "externalId": app["externalId"],
                                 "displayName": app["displayName"]}])

    assert installer.install(aad_object_id=person, tenant_id=factories.TENANT) is True


def test_consent_granted_since_the_token_was_issued_is_seen_with_a_new_token_at_most_every_minute(teams, person,
                                                                                                   monkeypatch):
    from bots import installs

    installer = AppInstaller()
    teams.client.graph_config(permissions=["AppCatalog.Read.All"])
    graph_token_provider.invalidate()
    with pytest.raises(InstallRefused):
        installer.install(aad_object_id=person, tenant_id=factories.TENANT)  # renews once, still refused
    issued = teams.client.stats()["tokens_issued"]
    teams.client.graph_config(permissions=["AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"])

    with pytest.raises(InstallRefused):  # within the minute: the token of before, refused again
        installer.install(aad_object_id=person, tenant_id=factories.TENANT)
    assert teams.client.stats()["tokens_issued"] == issued

    monkeypatch.setattr(installs, "RENEW_SECONDS", 0.0)  # a minute later
    assert installer.install(aad_object_id=person, tenant_id=factories.TENANT) is True


def test_without_a_tenant_to_ask_graph_in_nothing_is_asked_and_it_says_what_to_set(settings):
    settings.GRAPH_AUTHORITY = ""

    with pytest.raises(InstallRefused) as refused:
        AppInstaller(client=FakeGraph({"value": [{"id": "c"}]})).install(aad_object_id="x", tenant_id="t")

    assert (refused.value.code, refused.value.message) == ("GraphCredentialsRefused", (
        "GRAPH_AUTHORITY is empty: set BOT_TENANT_ID (or GRAPH_AUTHORITY) to the organisation's tenant, whose Graph "
        "Crier installs the app through (docs/configuration.md)."))


class FakeInstalls(FakeGraph):
    """The catalog's GET answers with the app; every install's POST raises ``refusal``; tokens are counted."""

    def __init__(self, refusal: GraphError) -> None:
        super().__init__({"value": [{"id": "cat-1"}]})
        self.refusal, self.posts, self.invalidated = refusal, 0, 0
        self.tokens = self

    def invalidate(self) -> None:
        self.invalidated += 1

    def post(self, url, body, *, needs=""):
        self.posts += 1
        raise self.refusal


def test_graph_that_lists_the_app_but_will_not_install_it_is_asked_twice_then_said_so(settings):
    settings.GRAPH_AUTHORITY = "https://login.example/tenant"
    client = FakeInstalls(GraphError(status=404, code="NotFound", message="The app 'cat-1' was not found."))

    with pytest.raises(InstallRefused) as refused:
        AppInstaller(client=client, clock=Clock(1000.0)).install(aad_object_id="someone", tenant_id="t")

    assert (refused.value.code, client.posts, len(client.calls)) == ("AppNotInCatalog", 2, 2)
    assert refused.value.message == "Graph no longer finds the app in the catalog: The app 'cat-1' was not found."


def test_a_refused_consent_renews_the_token_at_once_then_at_most_once_a_minute(settings):
    settings.GRAPH_AUTHORITY = "https://login.example/tenant"
    clock = Clock(0.0)  # a process that has just started
    client = FakeInstalls(GraphError(status=403, code="Forbidden", message="Missing role permissions on the request."))
    installer = AppInstaller(client=client, clock=clock)

    def refused() -> None:
        with pytest.raises(InstallRefused):
            installer.install(aad_object_id="someone", tenant_id="t")

    refused()
    assert (client.invalidated, client.posts) == (1, 2)  # renewed, and asked again
    clock.now = 59.9
    refused()
    assert (client.invalidated, client.posts) == (1, 3)
    clock.now = 60.0
    refused()
    assert (client.invalidated, client.posts) == (2, 5)


def test_installs_are_paced_by_tenant_however_its_id_is_written(settings):
    settings.GRAPH_AUTHORITY = "https://login.example/tenant"

    class Paces:
        def __init__(self) -> None:
            self.tenants = []

        def wait(self, tenant_id: str) -> None:
            self.tenants.append(tenant_id)

    class Accepting(FakeInstalls):
        def post(self, url, body, *, needs=""):
            self.posts += 1
            return {}

    pace = Paces()
    installer = AppInstaller(client=Accepting(GraphError(status=500, code="x", message="")), pace=pace)
    for tenant in ("ABC-def", "abc-DEF"):
        installer.install(aad_object_id="someone", tenant_id=tenant)

    assert pace.tenants == ["abc-def", "abc-def"]
