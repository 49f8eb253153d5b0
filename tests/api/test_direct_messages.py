"""Messages to named people, now (transactional notices), and test sends of a campaign."""

import pytest

from campaigns.api.auth import api_key_create
from campaigns.models import Campaign, OptOut
from delivery.models import Delivery
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def test_a_direct_message_reaches_the_people_named_and_accounts_for_each(api):
    factories.recipient(external_id="ready")
    OptOut.objects.create(recipient=factories.recipient(external_id="stopped"), source=OptOut.Source.TYPED_STOP)
    factories.recipient(external_id="left", is_active=False)
    template = factories.template(text="Your laptop is ready, {{first_name}}.")
    category = factories.category(slug="it")

    response = api.post("/api/v1/messages/", {"template": template.pk, "category": "it",
                                              "recipients": ["ready", "stopped", "left", "ready"]}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["status"], body["counts"]["total"]) == ("direct", "running", 3)
    rows = dict(Delivery.objects.filter(campaign_id=body["id"]).values_list("recipient__external_id", "skip_reason"))
    assert rows == {"ready": "", "stopped": "opted_out", "left": "inactive"}
    assert Campaign.objects.get(pk=body["id"]).category == category


def test_a_direct_message_naming_someone_unknown_sends_nothing_and_names_them(api):
    factories.recipient(external_id="known")
    template, _ = factories.template(), factories.category(slug="it")

    response = api.post("/api/v1/messages/", {"template": template.pk, "category": "it",
                                              "recipients": ["known", "ghost"]}, format="json")

    assert response.status_code == 400 and error_of(response)["fields"]["recipients"] == ["ghost"]
    assert not Campaign.objects.exists()


def test_a_test_send_goes_to_the_testers_and_leaves_the_campaign_a_draft(api):
    factories.recipient(external_id="tester")
    factories.recipient(external_id="everyone-else")
    campaign = factories.campaign(name="Town hall")

    response = api.post(f"/api/v1/campaigns/{campaign.pk}/test-send/", {"recipients": ["tester"]}, format="json")

    assert response.status_code == 201
    assert response.json()["name"] == "Test of Town hall"
    assert list(Delivery.objects.filter(campaign_id=response.json()["id"]).values_list("recipient__external_id",
                                                                                        flat=True)) == ["tester"]
    campaign.refresh_from_db()
    assert campaign.status == "draft" and not campaign.deliveries.exists()


def test_sending_now_needs_the_send_scope(api):
    from rest_framework.test import APIClient

    factories.recipient(external_id="p")
    template, _ = factories.template(), factories.category(slug="it")
    campaign = factories.campaign()
    _, secret = api_key_create(name="preparer", scopes=["read", "campaigns:write"])
    preparer = APIClient()
    preparer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    direct = preparer.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": ["p"]},
                           format="json")
    test = preparer.post(f"/api/v1/campaigns/{campaign.pk}/test-send/", {"recipients": ["p"]}, format="json")

    assert direct.status_code == test.status_code == 403
    assert Campaign.objects.count() == 1


def test_a_direct_message_cannot_be_launched_again(api):
    factories.recipient(external_id="p")
    template, _ = factories.template(), factories.category(slug="it")
    sent = api.post("/api/v1/messages/", {"template": template.pk, "category": "it", "recipients": ["p"]},
                    format="json").json()
    assert api.post(f"/api/v1/campaigns/{sent['id']}/launch/").status_code == 409


def test_a_direct_message_to_more_people_than_the_approval_threshold_needs_a_key_that_may_approve(api, settings):
    settings.APPROVAL_THRESHOLD = 2
    for n in range(3):
        factories.recipient(external_id=f"many-{n}")
    template, _ = factories.template(), factories.category(slug="it")
    body = {"template": template.pk, "category": "it", "recipients": ["many-0", "many-1", "many-2"]}

    refused = api.post("/api/v1/messages/", body, format="json")

    assert refused.status_code == 409 and error_of(refused)["code"] == "approval_required"
    assert not Campaign.objects.exists()
    _, secret = api_key_create(name="trusted", scopes=["campaigns:send", "campaigns:approve"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    sent = api.post("/api/v1/messages/", body, format="json")
    assert sent.status_code == 201, sent.json()
    campaign = Campaign.objects.get(pk=sent.json()["id"])
    assert campaign.approved_at is not None
    assert campaign.audit_entries.get().api_key.name == "trusted"
