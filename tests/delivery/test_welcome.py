import datetime

import pytest
from django.utils import timezone

from campaigns.errors import ApplicationError
from campaigns.models import Campaign
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
