"""A campaign that may install the app for people who lack it (``Campaign.install_app``): when Teams answers
that a person has not installed it, Crier installs it through the emulator's Microsoft Graph and sends in the
chat that makes; otherwise, or when the install is refused, the person's delivery says why."""

from __future__ import annotations

import pytest

from bots.models import TeamsAddress
from bots.tokens import graph_token_provider
from delivery import services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def catalog_read_afresh():
    from delivery import sending

    sending._installer._catalog = None  # each test's emulator has its own catalog


@pytest.fixture
def lacking(teams):
    """Someone in Entra ID and in Teams who never installed the app (and Teams installs it for nobody)."""
    person = factories.recipient()
    aad = str(person.aad_object_id)
    teams.client.graph_users([{"id": aad, "displayName": str(person)}])
    teams.client.register_users([{"aad_object_id": aad, "name": str(person), "installed": False}])
    teams.client.config(auto_install=False)
    return person


def sent_to(person, **fields) -> Delivery:
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_crier_installs_the_app_for_someone_who_lacks_it_and_sends_in_the_chat_it_makes(teams, lacking):
    delivery = sent_to(lacking, install_app=True)

    assert (delivery.status, delivery.installed_by_crier, delivery.error_code) == ("sent", True, "")
    assert teams.client.user(str(lacking.aad_object_id))["installed"] is True
    [message] = teams.client.messages(user=str(lacking.aad_object_id))
    assert message["conversation_id"] == delivery.conversation_id
    assert TeamsAddress.objects.get(aad_object_id=lacking.aad_object_id).conversation_id == delivery.conversation_id


def test_without_the_campaigns_leave_nothing_is_installed_and_teams_answer_is_recorded(teams, lacking):
    delivery = sent_to(lacking, install_app=False)

    assert (delivery.status, delivery.error_code, delivery.installed_by_crier) == (
        "failed", "ForbiddenOperationException", False)
    assert teams.client.user(str(lacking.aad_object_id))["installed"] is False
    assert teams.client.graph_stats()["installs"] == 0


def test_someone_who_has_the_app_is_sent_to_without_an_install(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": str(person)}])

    delivery = sent_to(person, install_app=True)

    assert (delivery.status, delivery.installed_by_crier) == ("sent", False)
    assert teams.client.graph_stats()["installs"] == 0


@pytest.mark.parametrize("refuse, code, advice", [
    (lambda emu: emu.graph_install_policy(True), "AppBlockedByPolicy", "Permission policies"),
    (lambda emu: emu.graph_config(permissions=["User.Read.All"]), "AppConsentMissing",
     "TeamsAppInstallation.ReadWriteSelfForUser.All"),
    (lambda emu: emu.graph_catalog([]), "AppNotInCatalog", "upload the Teams app package"),
])
def test_an_install_refused_ends_the_delivery_saying_why_and_what_to_do(teams, lacking, refuse, code, advice):
    refuse(teams.client)
    graph_token_provider.invalidate()

    delivery = sent_to(lacking, install_app=True)

    assert (delivery.status, delivery.error_code, delivery.installed_by_crier) == ("failed", code, False)
    assert advice in delivery.error_message
    assert teams.client.messages(user=str(lacking.aad_object_id)) == []


def test_a_new_campaign_takes_the_organisations_default(settings):
    settings.INSTALL_APP_DEFAULT = True
    assert factories.campaign().install_app is True
    settings.INSTALL_APP_DEFAULT = False
    assert factories.campaign().install_app is False
