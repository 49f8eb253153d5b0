"""Installing the app for a person who lacks it, through the emulator's Microsoft Graph (real HTTPS and
tokens): the chat it makes is one the bot can send in; every refusal has its code and what to do; installs
are paced under Graph's limit for them."""

from __future__ import annotations

import json
import uuid

import pytest

from bots.addresses import address_of
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


def send_in(conversation_id: str, aad: str) -> str:
    address = address_of(aad_object_id=aad, tenant_id=factories.TENANT, stored=("", "", "", conversation_id))
    return TeamsTransport().send(address=address, activity_json=json.dumps(message_activity(text="Hi")).encode())


def test_it_installs_the_app_and_the_chat_it_makes_is_one_the_bot_sends_in(teams, person):
    installed = AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT)

    assert installed.by_crier is True
    assert send_in(installed.conversation_id, person).activity_id
    assert teams.client.user(person)["installed"] is True
    assert teams.client.graph_stats()["installs"] == 1


def test_a_person_who_has_the_app_already_is_not_installed_again_and_their_chat_is_found(teams, person):
    first = AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT)
    again = AppInstaller().install(aad_object_id=person, tenant_id=factories.TENANT)

    assert again.by_crier is False and again.conversation_id == first.conversation_id
    assert teams.client.graph_stats()["install_conflicts"] == 1


@pytest.mark.parametrize("setup, code, advice", [
    (lambda emu: emu.graph_config(permissions=["User.Read.All", "AppCatalog.Read.All"]), "AppConsentMissing",
     "TeamsAppInstallation.ReadWriteSelfForUser.All"),
    (lambda emu: emu.graph_config(permissions=["TeamsAppInstallation.ReadWriteSelfForUser.All"]), "AppConsentMissing",
     "AppCatalog.Read.All"),
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
    with pytest.raises(InstallRefused) as refused:
        AppInstaller().install(aad_object_id=str(uuid.uuid4()), tenant_id=factories.TENANT)
    assert refused.value.code == "UserNotFound"


def test_the_apps_catalog_id_is_read_once_for_many_installs(teams, person):
    installer = AppInstaller()
    other = str(uuid.uuid4())
    teams.client.graph_users([{"id": other, "displayName": "Otto Other"}])
    before = teams.client.graph_stats()["requests"]

    installer.install(aad_object_id=person, tenant_id=factories.TENANT)
    installer.install(aad_object_id=other, tenant_id=factories.TENANT)

    # one catalog read, then three calls for each person: install, find the installation, its chat
    assert teams.client.graph_stats()["requests"] - before == 1 + 3 * 2


class Clock:
    def __init__(self, now: float) -> None:
        self.now, self.slept = now, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_installs_are_paced_per_second_and_tenant_across_workers(redis_client):
    clock = Clock(1000.25)
    one, two = (InstallPace(redis_client, per_second=3, clock=clock, sleep=clock.sleep) for _ in range(2))

    for pace in (one, two, one):
        pace.wait("tenant-a")
    two.wait("tenant-b")  # another tenant has its own count
    assert clock.slept == []
    one.wait("tenant-a")  # the fourth in that second waits for the next

    assert clock.slept == [0.75] and clock.now == 1001.0
