"""What an author (staff, in the "Authors" group, not a superuser) can open, and what they cannot."""

from __future__ import annotations

import pytest
from django.urls import reverse

from bots.models import TeamsAddress
from campaigns.models import OptOut
from delivery import services
from tests import factories

pytestmark = pytest.mark.django_db

EVERYDAY_MODELS = [
    "campaigns_recipient", "campaigns_audience", "campaigns_messagetemplate", "campaigns_category",
    "campaigns_campaign", "campaigns_optout",
]
READ_ONLY_MODELS = ["delivery_delivery", "bots_teamsaddress"]


def test_the_authors_group_has_exactly_the_permissions_the_migration_grants(comms_group):
    codenames = set(comms_group.permissions.values_list("content_type__app_label", "codename"))

    assert ("campaigns", "delete_campaign") in codenames
    assert ("campaigns", "delete_optout") in codenames
    assert ("delivery", "view_delivery") in codenames
    assert ("bots", "view_teamsaddress") in codenames
    assert not {("delivery", "change_delivery"), ("bots", "change_teamsaddress")} & codenames
    assert not {("campaigns", "delete_recipient"), ("campaigns", "delete_category")} & codenames
    assert not {code for code in codenames if code[1].endswith("_apikey")}
    assert not {code for code in codenames if code[0] == "auth"}


@pytest.mark.parametrize("model", EVERYDAY_MODELS + READ_ONLY_MODELS)
def test_comms_user_opens_every_list(comms_client, model):
    assert comms_client.get(reverse(f"admin:{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", EVERYDAY_MODELS)
def test_comms_user_opens_every_add_page(comms_client, model):
    assert comms_client.get(reverse(f"admin:{model}_add")).status_code == 200


@pytest.mark.parametrize("model", READ_ONLY_MODELS)
def test_nobody_adds_deliveries_or_teams_addresses_by_hand(admin_client, model):
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403


def test_comms_user_opens_every_change_page(comms_client):
    person = factories.recipient()
    TeamsAddress.objects.create(aad_object_id=person.aad_object_id, state=TeamsAddress.State.INSTALLED)
    opt_out = OptOut.objects.create(recipient=person, source=OptOut.Source.TYPED_STOP)
    audience = factories.audience()
    campaign = factories.campaign(audience=audience)
    services.campaign_launch(campaign_id=campaign.pk)
    pages = [
        ("campaigns_recipient", person), ("campaigns_audience", audience),
        ("campaigns_messagetemplate", campaign.template),
        ("campaigns_category", campaign.category), ("campaigns_campaign", campaign), ("campaigns_optout", opt_out),
        ("delivery_delivery", campaign.deliveries.get()),
        ("bots_teamsaddress", TeamsAddress.objects.get(aad_object_id=person.aad_object_id)),
    ]

    for model, obj in pages:
        assert comms_client.get(reverse(f"admin:{model}_change", args=[obj.pk])).status_code == 200, model


@pytest.mark.parametrize("url", ["admin:campaigns_apikey_changelist", "admin:campaigns_apikey_add",
                                 "admin:auth_user_changelist", "admin:auth_group_changelist"])
def test_comms_user_cannot_open_api_keys_users_or_groups(comms_client, url):
    assert comms_client.get(reverse(url)).status_code == 403


def test_comms_user_deletes_a_draft_campaign_but_not_a_launched_one(comms_client):
    draft = factories.campaign()
    launched = factories.campaign()
    services.campaign_launch(campaign_id=launched.pk)

    assert comms_client.get(reverse("admin:campaigns_campaign_delete", args=[launched.pk])).status_code == 403
    response = comms_client.post(reverse("admin:campaigns_campaign_delete", args=[draft.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not type(draft).objects.filter(pk=draft.pk).exists()
