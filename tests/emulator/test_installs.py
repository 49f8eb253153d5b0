"""The emulator's Microsoft Graph app installation, as a real process over real HTTPS: the org app catalog
found by manifest id, installing the app for a person (what reaches the bot, conflicts, policy, permissions,
the 30-a-second limit), the person's installation and its chat, whose Graph id the Bot Connector takes too.

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
import urllib3

from bots import app_package
from emulator.client import EmulatorError
from emulator.process import RunningEmulator

from .identity import APP_ID, TENANT
from .test_emulator import FakeBot, Teams, acquire_token
from .test_graph import token

NOWHERE = "http://127.0.0.1:9/api/messages"
INSTALL_PERMISSIONS = ("TeamsAppInstallation.ReadWriteSelfForUser.All", "TeamsAppInstallation.ReadWriteForUser.All")


@pytest.fixture(autouse=True)
def fresh(emu: RunningEmulator) -> None:
    emu.client.reset()
    emu.client.config(limits=False, auto_install=True, keep_bodies=True, faults={}, seed=None, bot_endpoint=NOWHERE)


@pytest.fixture(scope="module")
def teams(emu: RunningEmulator) -> Teams:
    """The bot's side of the Bot Connector."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
        return Teams(emu, acquire_token(emu)["access_token"])


@pytest.fixture
def bot(emu: RunningEmulator) -> Any:
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    fake = FakeBot(json.loads(pool.request("GET", f"{emu.url}/botframework/v1/.well-known/keys").data))
    emu.client.config(bot_endpoint=fake.start())
    yield fake
    fake.stop()
    assert fake.errors == []


class Graph:
    """Calls to the emulator's Graph, each with a fresh token (so it carries the permissions consented now)
    unless one is given."""

    def __init__(self, emu: RunningEmulator) -> None:
        self.emu = emu
        self.pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=emu.ca_file, retries=False, maxsize=32)

    def __call__(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 bearer: str | None = None, sent_at: float | None = None) -> tuple[int, Any, dict[str, str]]:
        """The status, the JSON (None for no body at all) and the headers."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Authorization": f"Bearer {bearer or token(self.emu)['access_token']}",
                   "Content-Type": "application/json",
                   **({"X-Crier-Sent-At": f"{sent_at:.6f}"} if sent_at is not None else {})}
        response = self.pool.request(method, self.emu.graph_url + path, body=data, headers=headers)
        return response.status, json.loads(response.data) if response.data else None, dict(response.headers)

    def install(self, aad: str, app_id: str, bearer: str | None = None,
                sent_at: float | None = None) -> tuple[int, Any, dict[str, str]]:
        bind = {"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"}
        return self("POST", f"/users/{aad}/teamwork/installedApps", bind, bearer=bearer, sent_at=sent_at)


@pytest.fixture
def graph(emu: RunningEmulator) -> Graph:
    return Graph(emu)


def crier(emu: RunningEmulator) -> dict[str, Any]:
    [app] = emu.client.graph_catalog_list()
    return app


def by_external_id(external_id: str) -> str:
    return "/appCatalogs/teamsApps?$filter=" + quote(f"externalId eq '{external_id}'")


def not_installed(emu: RunningEmulator) -> str:
    return emu.client.register_users([{"aad_object_id": str(uuid.uuid4()), "installed": False}])[0]["aad_object_id"]


def installed_apps(graph: Graph, aad: str, condition: str) -> tuple[int, Any, dict[str, str]]:
    return graph("GET", f"/users/{aad}/teamwork/installedApps?$expand=teamsApp&$filter=" + quote(condition))


def installation_of(graph: Graph, aad: str) -> str:
    """The person's installation of Crier, found as Crier finds it: the install answers no id."""
    [found] = installed_apps(graph, aad, f"teamsApp/id eq '{crier(graph.emu)['id']}'")[1]["value"]
    return found["id"]


def chat_of(graph: Graph, aad: str) -> str:
    return graph("GET", f"/users/{aad}/teamwork/installedApps/{quote(installation_of(graph, aad))}/chat")[1]["id"]


def wait_for(bot: FakeBot, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while len(bot.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [activity for _, activity, _ in bot.received]


# The catalog ----------------------------------------------------------------------------------------


def test_the_catalog_holds_crier_under_the_manifest_id_crier_derives_and_finds_it(emu, graph, settings):
    settings.BOT_APP_ID, settings.TEAMS_APP_ID = APP_ID, ""
    app = crier(emu)
    assert app["externalId"] == app_package.app_id() and app["id"] != app["externalId"]
    assert (app["displayName"], app["distributionMethod"]) == ("Crier", "organization")

    status, body, _ = graph("GET", by_external_id(app["externalId"].upper()))
    assert status == 200, body
    assert body == {"@odata.context": f"{emu.graph_url}/$metadata#appCatalogs/teamsApps", "value": [app]}
    for both in (f"distributionMethod eq 'organization' and externalId eq '{app['externalId']}'",
                 f"externalId eq '{app['externalId']}' and distributionMethod eq 'organization'"):
        assert graph("GET", "/appCatalogs/teamsApps?$filter=" + quote(both))[1]["value"] == [app], both
    assert graph("GET", by_external_id(str(uuid.uuid4())))[1]["value"] == []
    store = f"distributionMethod eq 'store' and externalId eq '{app['externalId']}'"
    assert graph("GET", "/appCatalogs/teamsApps?$filter=" + quote(store))[1]["value"] == []
    emu.client.reset()
    assert crier(emu) == app  # the same ids after every reset


def test_a_filter_the_catalog_cannot_read_is_a_bad_request(emu, graph):
    for bad in ("externalId eq 5", "displayName eq 'Crier'", "externalId ne 'x'", "startswith(externalId,'a')",
                f"externalId eq '{crier(emu)['externalId']}' or id eq 'x'", ""):
        status, body, _ = graph("GET", "/appCatalogs/teamsApps?$filter=" + quote(bad))
        assert (status, body["error"]["code"]) == (400, "BadRequest"), bad


def test_reading_the_catalog_needs_a_catalog_permission(emu, graph):
    for denied in (["User.Read.All"], ["TeamsAppInstallation.ReadForUser.All"], list(INSTALL_PERMISSIONS)):
        emu.client.graph_config(permissions=denied)
        status, body, _ = graph("GET", by_external_id(crier(emu)["externalId"]))
        assert (status, body["error"]["code"]) == (403, "Forbidden"), denied
        assert body["error"]["message"].startswith("Missing role permissions"), denied
    for permission in ("AppCatalog.Read.All", "AppCatalog.ReadWrite.All", "Directory.Read.All"):
        emu.client.graph_config(permissions=[permission])
        assert graph("GET", by_external_id(crier(emu)["externalId"]))[1]["value"] == [crier(emu)], permission


def test_the_control_api_replaces_the_catalog_checking_every_entry_first(emu, graph):
    default, mine, other = crier(emu), str(uuid.uuid4()), str(uuid.uuid4())
    good = {"externalId": mine, "displayName": "Mine"}
    for bad, where in (({"externalId": "x", "displayName": "Bad"}, "apps[1].externalId"),
                       ({"id": "x", "externalId": other, "displayName": "Bad"}, "apps[1].id"),
                       ({"externalId": other, "displayName": ""}, "apps[1].displayName"),
                       ({"externalId": mine.upper(), "displayName": "Again"}, "apps[1]"), ("app", "apps[1]")):
        with pytest.raises(EmulatorError) as refused:
            emu.client.graph_catalog([good, bad])
        assert refused.value.status == 400 and where in refused.value.body["error"], bad
    assert emu.client.graph_catalog_list() == [default]

    fixed = str(uuid.uuid4())
    apps = emu.client.graph_catalog([good, {"id": fixed.upper(), "externalId": other, "displayName": "Other"}])
    assert [app["displayName"] for app in apps] == ["Mine", "Other"] and apps[1]["id"] == fixed
    assert str(uuid.UUID(apps[0]["id"])) == apps[0]["id"] and apps == emu.client.graph_catalog_list()
    assert graph("GET", by_external_id(mine))[1]["value"] == [apps[0]]
    assert graph("GET", by_external_id(default["externalId"]))[1]["value"] == []


# Installing -----------------------------------------------------------------------------------------


def test_installing_makes_the_person_installed_and_the_bot_hears_of_it(emu, graph, bot):
    aad = not_installed(emu)

    status, body, headers = graph.install(aad, crier(emu)["id"])

    assert (status, body, headers.get("Content-Length")) == (201, None, "0")  # no body, as Graph documents
    user = emu.client.user(aad)
    assert (user["installed"], user["uninstalled"]) == (True, False)
    update, installation = wait_for(bot, 2)
    assert update["type"] == "conversationUpdate"
    assert update["membersAdded"] == [{"id": f"28:{APP_ID}"}, {"id": user["user_id"], "aadObjectId": aad}]
    assert (installation["type"], installation["action"]) == ("installationUpdate", "add")
    for activity in (update, installation):
        assert activity["conversation"] == {"conversationType": "personal", "tenantId": TENANT,
                                            "id": user["conversation_id"]}  # as Teams: the a: id, not Graph's
        assert activity["serviceUrl"] == emu.service_url
    assert emu.client.graph_stats()["installs"] == 1


def test_the_answer_does_not_wait_for_nor_depend_on_the_bot(emu, graph):
    aad = not_installed(emu)  # nothing listens on the bot's endpoint

    assert graph.install(aad, crier(emu)["id"])[0] == 201
    assert emu.client.user(aad)["installed"] is True


def test_installing_again_is_a_conflict_and_a_reinstall_keeps_its_id(emu, graph):
    app_id, aad = crier(emu)["id"], not_installed(emu)
    assert graph.install(aad, app_id)[0] == 201
    first = installation_of(graph, aad)

    status, body, _ = graph.install(aad, app_id)
    assert (status, body["error"]["code"], body["error"]["message"]) == (409, "Conflict", "App is already installed.")
    installed_in_teams = emu.client.register_users([str(uuid.uuid4())])[0]["aad_object_id"]
    assert graph.install(installed_in_teams, app_id)[0] == 409
    emu.client.uninstall(aad)
    assert graph.install(aad, app_id)[0] == 201 and installation_of(graph, aad) == first
    assert emu.client.user(aad)["uninstalled"] is False
    stats = emu.client.graph_stats()
    assert (stats["installs"], stats["install_conflicts"]) == (2, 2)


def test_a_person_known_only_from_the_directory_is_installed(emu, graph, bot):
    person, gone = str(uuid.uuid4()), str(uuid.uuid4())
    emu.client.graph_users([{"id": person, "displayName": "Grace Hopper"}, {"id": gone, "displayName": "Gone"}])
    emu.client.graph_delete(gone)

    assert graph.install(person, crier(emu)["id"])[0] == 201
    assert graph.install(gone, crier(emu)["id"])[0] == 404
    user = emu.client.user(person)
    assert (user["installed"], user["name"], user["tenant_id"]) == (True, "Grace Hopper", TENANT)
    assert wait_for(bot, 2)[0]["from"] == {"id": user["user_id"], "name": "Grace Hopper", "aadObjectId": person}
    assert [listed["aad_object_id"] for listed in emu.client.users()] == [person]


def test_unknown_people_and_apps_are_not_found_and_a_body_without_the_app_is_refused(emu, graph):
    aad, app_id, stranger = not_installed(emu), crier(emu)["id"], str(uuid.uuid4())

    for person in (stranger, "not-a-guid"):
        status, body, _ = graph.install(person, app_id)
        assert (status, body["error"]["code"], body["error"]["message"]) == (404, "NotFound", "User not found")
    missing = str(uuid.uuid4())
    status, body, _ = graph.install(aad, missing)
    assert (status, body["error"]["code"]) == (404, "NotFound") and "catalog" in body["error"]["message"]
    assert missing in body["error"]["message"]
    path = f"/users/{aad}/teamwork/installedApps"
    for bad in (b"{not json", b"{}", json.dumps({"teamsApp@odata.bind": f"/teamsApps/{app_id}"}).encode(),
                json.dumps({"teamsApp@odata.bind": 7}).encode()):
        status, body, _ = graph("POST", path, raw=bad)
        assert (status, body["error"]["code"]) == (400, "BadRequest"), bad
    elsewhere = {"teamsApp@odata.bind": f"https://example.test/beta/appCatalogs/teamsApps/{app_id.upper()}"}
    assert emu.client.user(aad)["installed"] is False and len(emu.client.users()) == 1
    assert graph("POST", path, elsewhere)[0] == 201


def test_the_app_permission_policy_blocks_the_tenant_or_some_people(emu, graph, bot):
    app_id, first, second = crier(emu)["id"], not_installed(emu), not_installed(emu)

    assert emu.client.graph_install_policy(True) == {"blocked": True, "users": []}
    status, body, _ = graph.install(first, app_id)
    assert (status, body["error"]["code"]) == (403, "Forbidden")
    assert body["error"]["message"] == "App is blocked by app permission policy."
    assert emu.client.graph_install_policy(False) == {"blocked": False, "users": []}
    emu.client.graph_install_policy(True, users=[first.upper()])
    assert graph.install(first, app_id)[0] == 403
    assert graph.install(second, app_id)[0] == 201
    assert emu.client.user(first)["installed"] is False
    assert [activity["from"]["aadObjectId"] for activity in wait_for(bot, 2)] == [second, second]
    emu.client.graph_install_policy(False, users=[first])
    assert graph.install(first, app_id)[0] == 201
    with pytest.raises(EmulatorError) as refused:
        emu.client.request("POST", "/_emulator/graph/install-policy", {"blocked": "yes"})
    assert refused.value.status == 400


def test_installing_needs_an_installation_permission(emu, graph):
    app_id, aad = crier(emu)["id"], not_installed(emu)
    emu.client.graph_config(permissions=["User.Read.All", "AppCatalog.ReadWrite.All",
                                         "TeamsAppInstallation.ReadForUser.All"])

    status, body, _ = graph.install(aad, app_id)

    assert (status, body["error"]["code"]) == (403, "Forbidden")
    assert body["error"]["message"].startswith("Missing role permissions")
    assert emu.client.user(aad)["installed"] is False
    emu.client.graph_config(permissions=["TeamsAppInstallation.ReadWriteForUser.All"])
    assert graph.install(aad, app_id)[0] == 201


def consenting(app_id: str, permissions: Any) -> dict[str, Any]:
    return {"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}",
            "consentedPermissionSet": {"resourceSpecificPermissions": permissions}}


def test_consenting_to_resource_specific_permissions_while_installing_needs_an_and_consent_permission(emu, graph):
    app_id, aad = crier(emu)["id"], not_installed(emu)
    read_receipts = [{"permissionValue": "ChatMessageReadReceipt.Read.Chat", "permissionType": "application"}]
    emu.client.graph_config(permissions=["TeamsAppInstallation.ReadWriteSelfForUser.All"])

    status, body, _ = graph("POST", f"/users/{aad}/teamwork/installedApps", consenting(app_id, read_receipts))

    assert (status, body["error"]["code"]) == (403, "Forbidden")
    assert body["error"]["message"].startswith("Missing role permissions")
    assert "ReadWriteAndConsentSelfForUser" in body["error"]["message"]
    assert emu.client.user(aad)["installed"] is False
    emu.client.graph_config(permissions=["TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"])
    assert graph("POST", f"/users/{aad}/teamwork/installedApps", consenting(app_id, read_receipts))[0] == 201
    assert emu.client.graph_stats()["installs_consenting"] == 1


@pytest.mark.parametrize("permissions", [
    "ChatMessageReadReceipt.Read.Chat",
    [{"permissionValue": "ChatMessageReadReceipt.Read.Chat"}],
    [{"permissionValue": "", "permissionType": "application"}],
    [{"permissionValue": "ChatMessageReadReceipt.Read.Chat", "permissionType": "Application"}],  # not Graph's enum
    [{"permissionValue": "ChatMessageReadReceipt.Read.Chat", "permissionType": "Sideways"}],
])
def test_a_consented_permission_set_graph_cannot_read_is_a_bad_request(emu, graph, permissions):
    app_id, aad = crier(emu)["id"], not_installed(emu)

    status, body, _ = graph("POST", f"/users/{aad}/teamwork/installedApps", consenting(app_id, permissions))

    assert (status, body["error"]["code"]) == (400, "BadRequest")
    assert emu.client.user(aad)["installed"] is False


def burst(graph: Graph, aad: str, app_id: str, count: int) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
    bearer = token(graph.emu)["access_token"]
    with ThreadPoolExecutor(max_workers=30) as pool:
        return list(pool.map(lambda _: graph.install(aad, app_id, bearer=bearer), range(count)))


def test_beyond_thirty_installation_calls_a_second_graph_answers_429_when_the_limits_are_on(emu, graph):
    app_id, aad = crier(emu)["id"], emu.client.register_users([str(uuid.uuid4())])[0]["aad_object_id"]
    emu.client.config(limits=True)

    answers = burst(graph, aad, app_id, 90)

    refused = [(body, headers) for status, body, headers in answers if status == 429]
    accepted = [status for status, _, _ in answers if status != 429]
    assert refused and len(accepted) >= 30 and set(accepted) == {409}
    for body, headers in refused:
        assert body["error"]["code"] == "TooManyRequests" and int(headers["Retry-After"]) >= 1
    stats = emu.client.graph_stats()
    assert (stats["install_throttled"], stats["install_conflicts"]) == (len(refused), len(accepted))
    time.sleep(1.1)
    assert graph.install(aad, app_id)[0] == 409

    emu.client.config(limits=False)
    assert {status for status, _, _ in burst(graph, aad, app_id, 90)} == {409}


def test_installing_answers_429_when_graph_is_told_to(emu, graph):
    app_id, aad = crier(emu)["id"], not_installed(emu)
    emu.client.graph_config(throttle_next=1, retry_after_seconds=3)

    status, body, headers = graph.install(aad, app_id)

    assert (status, body["error"]["code"], headers["Retry-After"]) == (429, "TooManyRequests", "3")
    assert emu.client.user(aad)["installed"] is False
    assert graph.install(aad, app_id)[0] == 201
    stats = emu.client.graph_stats()
    assert (stats["throttled"], stats["install_throttled"], stats["installs"]) == (1, 1, 1)


# The installation and its chat ----------------------------------------------------------------------

def test_the_installation_is_listed_and_its_chat_is_graphs_one_the_bot_sends_to(emu, graph, teams):
    app, aad, other = crier(emu), not_installed(emu), not_installed(emu)
    by_external = f"teamsApp/externalId eq '{app['externalId']}'"
    assert installed_apps(graph, aad, by_external)[1]["value"] == []
    assert graph.install(aad, app["id"])[0] == graph.install(other, app["id"])[0] == 201

    status, body, _ = installed_apps(graph, aad, by_external)
    assert status == 200, body
    [listed] = body["value"]
    assert listed["teamsApp"] == app and listed["id"] == installation_of(graph, aad) != installation_of(graph, other)
    assert installed_apps(graph, aad, f"teamsApp/id eq '{app['id'].upper()}'")[1]["value"] == body["value"]
    assert installed_apps(graph, aad, f"teamsApp/externalId eq '{uuid.uuid4()}'")[1]["value"] == []
    assert installed_apps(graph, aad, "teamsApp/displayName eq 'Crier'")[0] == 400
    assert installed_apps(graph, str(uuid.uuid4()), by_external)[0] == 404

    status, chat, _ = graph("GET", f"/users/{aad}/teamwork/installedApps/{quote(listed['id'])}/chat")
    assert status == 200 and re.match(r"^19:[^@]+@unq\.gbl\.spaces$", chat["id"]), chat
    assert chat["chatType"] == "oneOnOne"
    assert chat["id"] == "19:" + "_".join(sorted((aad, APP_ID))) + "@unq.gbl.spaces"
    assert chat["@odata.context"].endswith("/$metadata#chats/$entity")
    assert chat_of(graph, aad) == chat["id"] != chat_of(graph, other)  # the same on every read
    assert teams.send(chat["id"]).status == 201
    user = emu.client.user(aad)
    assert (user["chat_id"], [message["aad_object_id"] for message in user["messages"]]) == (chat["id"], [aad])
    assert user["conversation_id"] != chat["id"] and teams.create(aad).body["id"] == user["conversation_id"]


def test_the_chat_id_reaches_the_person_checked_limited_and_deleted_as_the_conversation_id(emu, graph, teams):
    aad = emu.client.register_users([str(uuid.uuid4())])[0]["aad_object_id"]  # installed in Teams, not by Graph
    chat, conversation = chat_of(graph, aad), teams.conversation(aad)

    first, second = teams.send(chat), teams.send(conversation)  # the same message by either id

    assert (first.status, second.status) == (201, 201), first
    ids = [message["activity_id"] for message in emu.client.messages(user=aad)]
    assert ids == [first.body["id"], second.body["id"]] and emu.client.stats()["duplicates"] == 1
    assert {message["conversation_id"] for message in emu.client.messages(user=aad)} == {conversation}
    path, bye = "/v3/conversations/{}/activities/{}", {"type": "message", "text": "Bye"}
    assert teams.call("PUT", path.format(quote(conversation, safe=""), ids[0]), bye).status == 200
    assert teams.call("DELETE", path.format(quote(chat, safe=""), ids[1])).status == 200
    emu.client.config(limits=True)
    answers = [teams.send(chat if index % 2 else conversation).status for index in range(8)]
    assert answers == [201] * 7 + [429] and teams.send(chat).status == 429  # one thread: seven a second
    emu.client.config(limits=False)
    emu.client.block(aad)
    assert teams.send(chat).body["error"]["code"] == "ConversationBlockedByUser"
    emu.client.unblock(aad)
    emu.client.delete_chat(aad)
    assert [(gone.status, gone.body["error"]["code"]) for gone in map(teams.send, (chat, conversation))] == [
        (404, "ConversationNotFound")] * 2
    fresh = teams.conversation(aad)  # the chat made again: Graph's id for it is the same
    assert fresh != conversation and teams.send(chat).status == 201 and chat_of(graph, aad) == chat
    assert emu.client.messages(user=aad)[-1]["conversation_id"] == fresh
    emu.client.uninstall(aad)
    assert json.loads(teams.send(chat).body["message"])["subCode"] == "MessageWritesBlocked"


def test_the_chat_of_another_or_a_removed_installation_is_not_found(emu, graph):
    app_id, aad, other = crier(emu)["id"], not_installed(emu), not_installed(emu)
    assert graph.install(aad, app_id)[0] == graph.install(other, app_id)[0] == 201
    installation, theirs = installation_of(graph, aad), installation_of(graph, other)

    for wrong in (theirs, "bm90LWFuLWluc3RhbGxhdGlvbg=="):
        status, body, _ = graph("GET", f"/users/{aad}/teamwork/installedApps/{wrong}/chat")
        assert (status, body["error"]["code"]) == (404, "NotFound"), wrong
    emu.client.graph_config(permissions=["TeamsAppInstallation.ReadForUser.All"])
    assert graph("GET", f"/users/{aad}/teamwork/installedApps/{installation}/chat")[0] == 200
    emu.client.uninstall(aad)
    assert graph("GET", f"/users/{aad}/teamwork/installedApps/{installation}/chat")[0] == 404
    emu.client.graph_config(permissions=["User.Read.All"])
    assert graph("GET", f"/users/{other}/teamwork/installedApps/{theirs}/chat")[0] == 403


def test_a_429_is_told_apart_when_the_calls_were_made_within_the_limit_and_only_bunched_on_their_way(emu, graph):
    app_id, aad = crier(emu)["id"], emu.client.register_users([str(uuid.uuid4())])[0]["aad_object_id"]
    emu.client.config(limits=True)
    bearer = token(emu)["access_token"]
    made = time.time() - 5.0
    # made a tenth of a second apart over 3.5 s, and arriving all at once
    answers = [graph.install(aad, app_id, bearer=bearer, sent_at=made + n * 0.1) for n in range(35)]
    time.sleep(1.1)
    answers_unstamped = [graph.install(aad, app_id, bearer=bearer) for _ in range(35)]

    stats = emu.client.graph_stats()
    refused = sum(1 for status, _, _ in answers + answers_unstamped if status == 429)
    unstamped_refused = sum(1 for status, _, _ in answers_unstamped if status == 429)
    assert refused == stats["install_throttled"] and unstamped_refused >= 1
    assert stats["install_throttled_when_made"] == unstamped_refused  # only those made too close together
