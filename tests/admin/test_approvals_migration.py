"""Approvals given before approvals counted people (approved_people is null) could never be outgrown:
the migration withdraws them from campaigns not sent yet, saying the approval must be given again."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from campaigns.models import AuditEntry, Campaign
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("latest_schema_afterwards")]

BEFORE = [("campaigns", "0014_approval_reach_and_roles")]
AFTER = [("campaigns", "0015_withdraw_approvals_without_people")]


# What is read back: only columns the migration knows (later ones are not there yet).
FIELDS = ["approved_at", "status", "status_reason"]


def migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


def test_approvals_that_counted_nobody_are_withdrawn_from_campaigns_not_sent_yet():
    now = timezone.now()
    draft = factories.campaign(approved_at=now, approved_fingerprint="x")
    scheduled = factories.campaign(approved_at=now, approved_fingerprint="x", status=Campaign.Status.SCHEDULED,
                                   send_at=now + timezone.timedelta(days=1))
    counted = factories.campaign(approved_at=now, approved_fingerprint="x", approved_people=12)
    running = factories.campaign(approved_at=now, approved_fingerprint="x", status=Campaign.Status.RUNNING)

    migrate(BEFORE)
    migrate(AFTER)

    for campaign in (draft, scheduled):
        campaign.refresh_from_db(fields=FIELDS)
        assert campaign.approved_at is None
        assert campaign.status == Campaign.Status.DRAFT
        assert "must be given again" in campaign.status_reason
        assert AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.APPROVAL_WITHDRAWN).exists()
    for campaign in (counted, running):
        campaign.refresh_from_db(fields=FIELDS)
        assert campaign.approved_at is not None and campaign.status_reason == ""
