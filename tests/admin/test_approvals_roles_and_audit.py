"""Approval of large campaigns by a second person, the author/approver/viewer roles, the audit log,
the staff member's own time zone and “Send a test to me”."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from campaigns.models import AuditEntry, Campaign, MessageTemplate, OptOut, StaffProfile
from delivery import services
from delivery.models import Delivery
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_audience(settings):
    """An announcement to everyone active counts as large once there are more than 2 people."""
    settings.APPROVAL_THRESHOLD = 2
    return [factories.recipient() for _ in range(3)]


def transition(client, campaign, name):
    return client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, name]), follow=True)


def test_an_author_cannot_launch_a_large_campaign_before_an_approver_approves_it(
    client, comms_user, approver_user, big_audience
):
    campaign = factories.campaign(created_by=comms_user)
    client.force_login(comms_user)

    refused = transition(client, campaign, "launch")

    assert any("must approve it first" in text for level, text in messages_of(refused) if level == "error")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT

    client.force_login(approver_user)
    approved = transition(client, campaign, "approve")
    assert ("success", f"“{campaign}” is approved: it can be launched or scheduled.") in messages_of(approved)

    client.force_login(comms_user)
    transition(client, campaign, "launch")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.approved_by == approver_user
    actions = list(AuditEntry.objects.filter(campaign=campaign).order_by("id").values_list("action", "user__username"))
    assert actions == [("approve", "avery"), ("launch", "casey")]


def test_the_approval_page_shows_the_message_and_how_many_people_it_reaches(client, approver_user, big_audience):
    campaign = factories.campaign(template=factories.template(text="Hello {{first_name}}, news"))
    client.force_login(approver_user)

    page = client.get(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).content.decode()

    assert "to 3 people of everyone active" in page
    assert f"Hello {big_audience[0].first_name}, news" in page  # the activity, rendered for its first person
    assert "adaptivecards.min.js" in page


def test_nobody_approves_their_own_campaign(client, approver_user, big_audience):
    campaign = factories.campaign(created_by=approver_user)
    client.force_login(approver_user)

    response = transition(client, campaign, "approve")

    assert ("error", f"“{campaign}”: You wrote this campaign: a second person must approve it.") in messages_of(response)
    campaign.refresh_from_db()
    assert campaign.approved_at is None


def test_an_author_cannot_approve(client, comms_user, big_audience):
    campaign = factories.campaign()
    client.force_login(comms_user)

    assert client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "approve"])).status_code == 403
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "/do/approve/" not in page


def test_a_small_campaign_needs_no_approval(comms_client, settings):
    settings.APPROVAL_THRESHOLD = 10
    factories.recipient()
    campaign = factories.campaign()

    transition(comms_client, campaign, "launch")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_editing_a_template_withdraws_the_approval_and_unschedules_the_campaign(approver_user, big_audience):
    campaign = factories.campaign()
    campaign.approved_by, campaign.approved_at = approver_user, timezone.now()
    campaign.save()
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(hours=1))

    template = MessageTemplate.objects.get(pk=campaign.template_id)
    template.text = "Something else entirely"
    template.save()

    campaign.refresh_from_db()
    assert campaign.approved_at is None
    assert campaign.status == Campaign.Status.DRAFT
    assert "needs approval again" in campaign.status_reason
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()


def test_changing_the_audience_in_the_admin_withdraws_the_approval(client, comms_user, approver_user, big_audience):
    campaign = factories.campaign(created_by=comms_user)
    campaign.approved_by, campaign.approved_at = approver_user, timezone.now()
    campaign.save()
    other = factories.audience()
    client.force_login(comms_user)

    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "kind": campaign.kind, "template": campaign.template_id, "audience": other.pk,
         "category": campaign.category_id, "send_at_0": "", "send_at_1": ""},
        follow=True,
    )

    assert any("needs approval again" in text for _, text in messages_of(response))
    campaign.refresh_from_db()
    assert campaign.audience == other and campaign.approved_at is None


def test_the_scheduler_puts_back_to_draft_a_campaign_whose_audience_outgrew_the_threshold(settings):
    settings.APPROVAL_THRESHOLD = 2
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(hours=1))
    Campaign.objects.filter(pk=campaign.pk).update(send_at=timezone.now() - datetime.timedelta(seconds=1))
    factories.recipient(), factories.recipient()

    assert services.launch_due_campaigns() == []

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert "must approve it first" in campaign.status_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_the_api_refuses_to_launch_a_large_unapproved_campaign_unless_the_key_may_approve(big_audience):
    campaign = factories.campaign()
    _, plain = api_key_create(name="hr")
    _, approving = api_key_create(name="trusted", scopes=["read", "campaigns:send", "campaigns:approve"])
    api = APIClient()

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    refused = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "approval_required"

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {approving}")
    launched = api.post(f"/api/v1/campaigns/{campaign.pk}/launch/")
    assert launched.status_code == 200, launched.content
    assert launched.json()["approved_at"] is not None
    entries = AuditEntry.objects.filter(campaign=campaign).order_by("id")
    assert [(e.action, e.api_key.name, e.user) for e in entries] == [("approve", "trusted", None), ("launch", "trusted", None)]


def test_a_viewer_reads_campaigns_but_changes_nothing(client, viewer_user):
    campaign = factories.campaign()
    client.force_login(viewer_user)

    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert page.status_code == 200
    assert "/do/launch/" not in page.content.decode()
    assert client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "launch"])).status_code == 403
    assert client.get(reverse("admin:campaigns_auditentry_changelist")).status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_cancel_and_opt_out_changes_are_in_the_audit_log(client, comms_user):
    person = factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    client.force_login(comms_user)

    transition(client, campaign, "cancel")
    client.post(reverse("admin:campaigns_optout_add"), {"recipient": person.pk, "source": "admin", "note": "asked HR"})
    opt_out = OptOut.objects.get(recipient=person)
    client.post(reverse("admin:campaigns_optout_delete", args=[opt_out.pk]), {"post": "yes"})

    entries = list(AuditEntry.objects.order_by("id").values_list("action", "user__username"))
    assert entries == [("launch", None), ("cancel", "casey"), ("opt_out_added", "casey"), ("opt_out_removed", "casey")]
    log = client.get(reverse("admin:campaigns_auditentry_changelist")).content.decode()
    assert f"Cancelled “{campaign}”" in log


def test_send_at_is_typed_and_shown_in_the_staff_members_own_time_zone(client, comms_user):
    client.force_login(comms_user)
    saved = client.post(reverse("crier-profile"), {"time_zone": "Asia/Tokyo", "teams_email": ""}, follow=True)
    assert ("success", "Your profile is saved.") in messages_of(saved)
    campaign = factories.campaign()
    tomorrow = (timezone.now() + datetime.timedelta(days=1)).astimezone(zoneinfo.ZoneInfo("Asia/Tokyo")).date()

    client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "kind": campaign.kind, "template": campaign.template_id, "audience": "",
         "category": campaign.category_id, "send_at_0": tomorrow.isoformat(), "send_at_1": "09:00:00"},
    )

    campaign.refresh_from_db()
    assert campaign.send_at == datetime.datetime.combine(tomorrow, datetime.time(0, 0), tzinfo=datetime.timezone.utc)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'data-zone="Asia/Tokyo"' in page and 'value="09:00:00"' in page


def test_an_unknown_teams_identity_is_a_form_error_and_saves_nothing(client, comms_user):
    client.force_login(comms_user)

    response = client.post(reverse("crier-profile"), {"time_zone": "Europe/Paris", "teams_email": "who@nowhere.example"})

    assert response.status_code == 200
    assert "Nobody active in Crier has the e-mail" in response.content.decode()
    assert not StaffProfile.objects.filter(user=comms_user, time_zone="Europe/Paris").exists()


def test_send_a_test_to_me_needs_a_linked_identity_then_sends_to_that_person(client, comms_user):
    me = factories.recipient(email="casey@example.com")
    campaign = factories.campaign()
    client.force_login(comms_user)
    url = reverse("admin:campaigns_campaign_test_send", args=[campaign.pk])

    refused = client.post(url, follow=True)
    assert any("Link your Teams identity first" in text for level, text in messages_of(refused) if level == "error")

    client.post(reverse("crier-profile"), {"time_zone": "", "teams_email": "CASEY@example.com"})
    sent = client.post(url, follow=True)

    assert any(text.startswith(f"Test of “{campaign}” sent to you") for _, text in messages_of(sent))
    test = Campaign.objects.get(kind=Campaign.Kind.DIRECT)
    assert list(test.deliveries.values_list("recipient_id", flat=True)) == [me.pk]
    assert test.created_by == comms_user
    assert AuditEntry.objects.filter(action=AuditEntry.Action.TEST_SEND, user=comms_user).count() == 1
