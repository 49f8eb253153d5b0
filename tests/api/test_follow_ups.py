"""Follow-ups over the API: reminders are a campaign's fields, a completed announcement is sent again to those it
failed for with an action, and a campaign's follow-ups are listed by ``follows``."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from delivery import services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def body(**fields):
    return {"name": "Policy", "template": factories.template().pk, "category": factories.category().slug, **fields}


def test_reminders_are_set_as_fields_and_their_duration_is_iso_8601(api):
    created = api.post("/api/v1/campaigns/", body(remind_who="not_read", remind_after="P2DT4H", remind_times=3),
                       format="json")

    assert created.status_code == 201, created.json()
    assert {k: created.json()[k] for k in ("remind_who", "remind_after", "remind_times", "remind_template", "follows",
                                           "follow_up_who")} == {
        "remind_who": "not_read", "remind_after": "P2DT04H00M00S", "remind_times": 3, "remind_template": None,
        "follows": None, "follow_up_who": ""}


@pytest.mark.parametrize("fields, field", [
    ({"remind_who": "not_read"}, "remind_after"),
    ({"remind_who": "not_acknowledged", "remind_after": "P1D"}, "remind_who"),
    ({"remind_who": "not_read", "remind_after": "PT30S"}, "remind_after"),
    ({"remind_who": "not_read", "remind_after": "P1D", "remind_times": 9}, "remind_times"),
    ({"remind_who": "someone"}, "remind_who"),
])
def test_reminders_that_cannot_be_sent_are_a_400_naming_the_field(api, fields, field):
    response = api.post("/api/v1/campaigns/", body(**fields), format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [field]
    assert not Campaign.objects.exists()


def test_a_completed_campaign_is_sent_again_to_those_it_failed_for_and_its_follow_ups_are_listed(api, teams):
    have, lack = factories.recipient(), factories.recipient()
    teams.client.register_users([str(have.aad_object_id)])
    teams.client.register_users([{"aad_object_id": str(lack.aad_object_id), "name": "Lacks", "installed": False}])
    teams.client.config(auto_install=False)
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in Delivery.objects.filter(campaign=campaign):
        delivery_send(delivery_id=delivery.pk)
    early = api.post(f"/api/v1/campaigns/{campaign.pk}/send-again/")
    services.campaigns_complete_finished()
    assert "send_again" in api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["actions"]
    teams.client.install(str(lack.aad_object_id))

    again = api.post(f"/api/v1/campaigns/{campaign.pk}/send-again/")
    twice = api.post(f"/api/v1/campaigns/{campaign.pk}/send-again/")

    assert early.status_code == 409 and error_of(early)["code"] == "invalid_state"
    assert again.status_code == 201, again.json()
    assert {k: again.json()[k] for k in ("follows", "follow_up_who", "status")} == {
        "follows": campaign.pk, "follow_up_who": "failed", "status": "running"}
    assert twice.status_code == 409 and error_of(twice)["code"] == "follow_up_open"
    listed = api.get(f"/api/v1/campaigns/?follows={campaign.pk}").json()["results"]
    assert [c["id"] for c in listed] == [again.json()["id"]]
    assert api.get("/api/v1/campaigns/?follows=0").status_code == 400


def test_a_follow_up_is_not_edited_so_it_sends_only_what_its_campaign_s_approval_covers(api):
    campaign = factories.campaign(status=Campaign.Status.COMPLETED)
    draft = factories.campaign(follows=campaign, follow_up_who="not_read", follow_up_number=1,
                               category=campaign.category, template=campaign.template)
    other = factories.template()

    response = api.patch(f"/api/v1/campaigns/{draft.pk}/", {"template": other.pk}, format="json")

    assert response.status_code == 409 and error_of(response)["code"] == "invalid_state"
    assert "edit" not in api.get(f"/api/v1/campaigns/{draft.pk}/").json()["actions"]
    assert Campaign.objects.get(pk=draft.pk).template_id == campaign.template_id
