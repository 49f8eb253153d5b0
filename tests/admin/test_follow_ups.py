"""The admin's follow-ups: a campaign's reminders are set on its form, its Watch page lists its follow-ups and when the
next reminder is due, and offers to send it again to those it failed for; a follow-up's page says what it follows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from delivery import follow_ups, services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def watch(campaign) -> str:
    return reverse("admin:campaigns_campaign_watch", args=[campaign.pk])


def completed(campaign: Campaign) -> Campaign:
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in Delivery.objects.filter(campaign=campaign):
        delivery_send(delivery_id=delivery.pk)
    assert campaign.pk in services.campaigns_complete_finished()
    campaign.refresh_from_db()
    return campaign


@pytest.fixture
def failed_once(teams):
    """A completed campaign to two people, one of whom lacked the app."""
    have, lack = factories.recipient(), factories.recipient()
    teams.client.register_users([str(have.aad_object_id)])
    teams.client.register_users([{"aad_object_id": str(lack.aad_object_id), "name": "Lacks", "installed": False}])
    teams.client.config(auto_install=False)
    campaign = completed(factories.campaign(name="Office move", remind_who=Campaign.FollowUp.NOT_READ,
                                            remind_after=timedelta(days=2)))
    return campaign, lack


def test_sending_again_from_the_watch_page_leads_to_the_follow_up_s_own_page(comms_client, failed_once, teams):
    campaign, lack = failed_once
    teams.client.install(str(lack.aad_object_id))
    url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "send_again"])
    assert f'href="{url}"' in comms_client.get(watch(campaign)).content.decode()

    response = comms_client.post(url)

    [again] = campaign.follow_ups.all()
    assert response.status_code == 302 and response["Location"] == watch(again)
    assert list(again.deliveries.values_list("recipient_id", flat=True)) == [lack.pk]
    page = comms_client.get(watch(again)).content.decode()
    assert f'Follows <a href="{watch(campaign)}">Office move</a>: sent to those it failed for.' in page
    listed = comms_client.get(watch(campaign)).content.decode()
    assert f'<a href="{watch(again)}">Sent again: Office move</a>' in listed


def test_the_watch_page_says_when_the_next_reminder_is_due(comms_client, failed_once):
    campaign, _ = failed_once

    page = comms_client.get(watch(campaign)).content.decode()

    due = follow_ups.next_reminder_at(campaign=campaign)
    assert due == campaign.completed_at + timedelta(days=2)
    assert 'id="next-reminder"' in page and "Next reminder, to those who have not read it" in page


def test_a_viewer_is_not_offered_to_send_again_and_cannot(client, viewer_user, failed_once):
    campaign, _ = failed_once
    client.force_login(viewer_user)
    url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "send_again"])

    assert url not in client.get(watch(campaign)).content.decode()
    assert client.post(url).status_code == 403
    assert not campaign.follow_ups.exists()


def test_reminders_are_set_on_the_form_and_refused_by_field_when_they_cannot_be(comms_client):
    campaign = factories.campaign(name="Policy")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    form = {"name": "Policy", "template": campaign.template_id, "category": campaign.category_id,
            "acknowledgement": "", "poll_question": "", "poll_options": "", "remind_template": ""}

    refused = comms_client.post(url, {**form, "remind_who": "not_acknowledged", "remind_after": "2 00:00:00"})
    saved = comms_client.post(url, {**form, "remind_who": "not_read", "remind_after": "2 00:00:00",
                                    "remind_times": "2"})

    assert refused.status_code == 200
    assert "asks nobody to acknowledge it" in str(refused.context["adminform"].form.errors["remind_who"])
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    campaign.refresh_from_db()
    assert (campaign.remind_who, campaign.remind_after, campaign.remind_times) == (
        "not_read", timedelta(days=2), 2)


def test_the_follow_ups_show_for_a_campaign_that_failed_for_everyone_and_to_staff_who_may_not_see_deliveries(
        client, viewer_user, teams):
    lack = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(lack.aad_object_id), "name": "Lacks", "installed": False}])
    teams.client.config(auto_install=False)
    campaign = completed(factories.campaign(name="Office move"))
    teams.client.install(str(lack.aad_object_id))
    again = follow_ups.follow_up_send_again(campaign_id=campaign.pk)
    client.force_login(viewer_user)

    page = client.get(watch(campaign)).content.decode()

    assert 'id="watch-follow-ups"' in page and f'<a href="{watch(again)}">Sent again: Office move</a>' in page


def test_a_reminder_kept_as_a_draft_says_it_waits_for_approval_and_an_approver_is_offered_to_approve_it(
        comms_client, approver_user, client, settings):
    settings.APPROVAL_THRESHOLD = 0
    campaign = factories.campaign(name="Policy", status=Campaign.Status.COMPLETED,
                                  approved_at=timezone.now(), follow_ups_fingerprint="as it was")
    draft = factories.campaign(name="Reminder 1: Policy", follows=campaign, follow_up_who="not_read",
                               follow_up_number=1, category=campaign.category, template=campaign.template)
    url = reverse("admin:campaigns_campaign_change", args=[draft.pk])

    page = comms_client.get(url).content.decode()
    client.force_login(approver_user)
    theirs = client.get(url).content.decode()

    assert "Waits for approval" in page
    assert reverse("admin:campaigns_campaign_transition", args=[draft.pk, "approve"]) in theirs
