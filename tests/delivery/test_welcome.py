import datetime

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from core.errors import ApplicationError
from delivery import services, welcome
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db


def launch_welcome(**fields):
    campaign = factories.campaign(kind=Campaign.Kind.WELCOME, **fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign


def test_launching_a_welcome_campaign_sends_nothing_by_itself():
    factories.recipient()
    campaign = launch_welcome()
    assert campaign.deliveries.count() == 0


def test_a_person_who_installs_the_bot_is_welcomed_once():
    person = factories.recipient()
    campaign = launch_welcome()

    first = welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))
    again = welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))

    assert len(first) == 1 and again == []
    assert Delivery.objects.get(pk=first[0]).campaign_id == campaign.pk


def test_new_starters_are_welcomed_when_their_start_date_arrives_but_not_before():
    today = timezone.localdate()
    starter = factories.recipient(start_date=today)
    future = factories.recipient(start_date=today + datetime.timedelta(days=3))
    veteran = factories.recipient(start_date=today - datetime.timedelta(days=400))
    campaign = launch_welcome()

    welcome.welcome_new_starters(today=today)
    welcome.welcome_new_starters(today=today)

    assert list(campaign.deliveries.values_list("recipient_id", flat=True)) == [starter.pk]
    welcome.welcome_new_starters(today=today + datetime.timedelta(days=3))
    assert set(campaign.deliveries.values_list("recipient_id", flat=True)) == {starter.pk, future.pk}
    assert not campaign.deliveries.filter(recipient=veteran).exists()


def test_only_one_welcome_campaign_runs_at_a_time():
    launch_welcome()
    second = factories.campaign(kind=Campaign.Kind.WELCOME)
    with pytest.raises(ApplicationError) as error:
        services.campaign_launch(campaign_id=second.pk)
    assert error.value.code == "welcome_already_running"
    second.refresh_from_db()
    assert second.status == Campaign.Status.DRAFT


def test_inactive_people_are_not_welcomed():
    person = factories.recipient(is_active=False)
    launch_welcome()
    assert welcome.welcome_on_install(aad_object_id=str(person.aad_object_id)) == []


# --- A welcome needs no approval, so it welcomes at most APPROVAL_THRESHOLD people a window -------------

def test_the_welcome_pass_welcomes_at_most_the_threshold_then_pauses_saying_why(settings):
    settings.APPROVAL_THRESHOLD, settings.APPROVAL_WINDOW_HOURS = 3, 24
    today = timezone.localdate()
    starters = [factories.recipient(start_date=today) for _ in range(5)]  # a bulk upsert made everyone start today
    campaign = launch_welcome()

    welcomed = welcome.welcome_new_starters(today=today)
    again = welcome.welcome_new_starters(today=today)

    assert sorted(campaign.deliveries.values_list("recipient_id", flat=True)) == [p.pk for p in starters[:3]]
    assert len(welcomed) == 3 and again == []
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "more than 3 new starters" in campaign.status_reason


def test_a_resumed_welcome_campaign_counts_its_window_again(settings):
    settings.APPROVAL_THRESHOLD = 3
    today = timezone.localdate()
    for _ in range(5):
        factories.recipient(start_date=today)
    campaign = launch_welcome()
    welcome.welcome_new_starters(today=today)

    services.campaign_resume(campaign_id=campaign.pk)
    welcome.welcome_new_starters(today=today)

    assert campaign.deliveries.count() == 5
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_installs_are_welcomed_past_the_threshold_but_count_toward_it(settings):
    settings.APPROVAL_THRESHOLD = 1
    today = timezone.localdate()
    installers = [factories.recipient() for _ in range(2)]
    starter = factories.recipient(start_date=today)
    campaign = launch_welcome()

    installed = [welcome.welcome_on_install(aad_object_id=str(p.aad_object_id)) for p in installers]
    starters = welcome.welcome_new_starters(today=today)

    assert [len(ids) for ids in installed] == [1, 1]
    assert starters == [] and not campaign.deliveries.filter(recipient=starter).exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
