"""Changing a campaign not sent yet: one rule for the admin and the API (campaigns.services.campaign_update)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns.api.auth import api_key_create
from campaigns.audit import Actor
from campaigns.models import AuditEntry, Campaign
from campaigns.services import campaign_update
from core.errors import ApplicationError
from tests import factories

pytestmark = pytest.mark.django_db


def approved(**fields) -> Campaign:
    campaign = factories.campaign(**fields)
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now())
    return Campaign.objects.get(pk=campaign.pk)


def test_a_change_of_name_keeps_the_approval_and_says_what_changed():
    campaign = approved(name="Town hall")
    staff = User.objects.create_user("sam", is_staff=True)

    update = campaign_update(campaign_id=campaign.pk, changes={"name": "Town hall, 5pm", "template": campaign.template},
                             actor=Actor(user=staff))

    assert (update.changed, update.approval_withdrawn) == (frozenset({"name"}), False)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.approved_at is not None, campaign.edited_by) == ("Town hall, 5pm", True, None)
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.CHANGE).exists()


def test_a_staff_members_change_of_what_was_approved_withdraws_it_and_is_recorded_as_theirs():
    campaign = approved()
    staff = User.objects.create_user("sam", is_staff=True)
    other = factories.template(name="Another text")

    update = campaign_update(campaign_id=campaign.pk, changes={"template": other}, actor=Actor(user=staff))

    assert (update.changed, update.approval_withdrawn) == (frozenset({"template"}), True)
    campaign.refresh_from_db()
    assert (campaign.template_id, campaign.approved_at, campaign.edited_by) == (other.pk, None, staff)
    change = AuditEntry.objects.get(action=AuditEntry.Action.CHANGE)
    assert (change.user, change.campaign_id, change.summary) == (staff, campaign.pk, f"Changed the template of “{campaign}”")


def test_an_api_keys_change_of_what_was_approved_withdraws_it_without_naming_a_person():
    campaign = approved()
    api_key, _ = api_key_create(name="hr-sync")

    update = campaign_update(campaign_id=campaign.pk, changes={"audience": factories.audience()},
                             actor=Actor(api_key=api_key))

    assert update.approval_withdrawn is True
    campaign.refresh_from_db()
    assert (campaign.approved_at, campaign.edited_by) == (None, None)
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.CHANGE).exists()


@pytest.mark.parametrize("status", [Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.COMPLETED,
                                    Campaign.Status.CANCELLED])
def test_a_campaign_no_longer_a_draft_or_scheduled_is_not_changed(status):
    campaign = factories.campaign(name="Sent")
    Campaign.objects.filter(pk=campaign.pk).update(status=status)

    with pytest.raises(ApplicationError) as refused:
        campaign_update(campaign_id=campaign.pk, changes={"name": "Renamed"}, actor=Actor(api_key=None))

    assert (refused.value.code, refused.value.status) == ("invalid_state", 409)
    assert Campaign.objects.get(pk=campaign.pk).name == "Sent"


def test_letting_crier_install_the_app_withdraws_the_approval_and_is_recorded():
    campaign = approved()
    staff = User.objects.create_user("sam", is_staff=True)

    update = campaign_update(campaign_id=campaign.pk, changes={"install_app": True}, actor=Actor(user=staff))

    assert (update.changed, update.approval_withdrawn) == (frozenset({"install_app"}), True)
    change = AuditEntry.objects.get(action=AuditEntry.Action.CHANGE)
    assert change.summary == f"Changed the install_app of “{campaign}”"


def test_a_new_campaign_takes_the_organisations_default_for_installing_the_app(settings):
    settings.INSTALL_APP_DEFAULT = True
    assert factories.campaign().install_app is True
    settings.INSTALL_APP_DEFAULT = False
    assert factories.campaign().install_app is False
