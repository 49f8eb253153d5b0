"""Approval rules where a campaign is scheduled or edited through the API (and the service beneath):
a large announcement is scheduled only once approved, and changing what an approved campaign sends
withdraws its approval."""

import datetime

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns.approvals import approval_fingerprint
from campaigns.audit import Actor
from campaigns.models import AuditEntry, Campaign
from campaigns.roles import APPROVERS, roles_ensure
from core.errors import ApplicationError
from delivery import services
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def large(settings):
    """An announcement to everyone active needs approval once there are more than 2 people."""
    settings.APPROVAL_THRESHOLD = 2
    for _ in range(3):
        factories.recipient()


def in_an_hour() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(hours=1)


def approve(campaign: Campaign) -> Campaign:
    approver = User.objects.create_user("avery", is_staff=True)
    approver.groups.add(roles_ensure()[APPROVERS])
    campaign.approved_by, campaign.approved_at = approver, timezone.now()
    campaign.approved_fingerprint = approval_fingerprint(campaign=campaign)
    campaign.approved_people = 3
    campaign.save()
    return campaign


def test_it_refuses_to_schedule_an_unapproved_large_campaign(large):
    campaign = factories.campaign()

    with pytest.raises(ApplicationError) as error:
        services.campaign_schedule(campaign_id=campaign.pk, send_at=in_an_hour(), actor=Actor())

    assert (error.value.code, error.value.status) == ("approval_required", 409)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.send_at) == (Campaign.Status.DRAFT, None)


def test_the_api_refuses_to_schedule_an_unapproved_large_campaign(api, large):
    campaign = factories.campaign()

    refused = api.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", {"send_at": in_an_hour().isoformat()},
                       format="json")

    assert (refused.status_code, error_of(refused)["code"]) == (409, "approval_required")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.SCHEDULE).exists()


def test_the_api_schedules_a_large_campaign_once_approved(api, large):
    campaign = approve(factories.campaign())

    scheduled = api.post(f"/api/v1/campaigns/{campaign.pk}/schedule/", {"send_at": in_an_hour().isoformat()},
                         format="json")

    assert scheduled.status_code == 200, scheduled.json()
    assert scheduled.json()["status"] == "scheduled"


def test_editing_an_approved_campaigns_template_through_the_api_withdraws_its_approval(api, large):
    campaign = approve(factories.campaign())
    services.campaign_schedule(campaign_id=campaign.pk, send_at=in_an_hour())

    edited = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"template": factories.template().pk}, format="json")

    assert edited.status_code == 200, edited.json()
    assert (edited.json()["status"], edited.json()["approved_at"]) == ("draft", None)
    campaign.refresh_from_db()
    assert campaign.approved_at is None and campaign.approved_by is None
    assert "needs approval again" in campaign.status_reason
    assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()


def test_renaming_an_approved_campaign_through_the_api_keeps_its_approval(api, large):
    campaign = approve(factories.campaign())

    edited = api.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "All hands, Friday"}, format="json")

    assert edited.status_code == 200, edited.json()
    campaign.refresh_from_db()
    assert campaign.approved_at is not None
    assert not AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()
