"""Pause, resume, cancel, a campaign pausing itself, and progress: against the emulator and Redis."""

import base64
import json

import pytest
from django.db import transaction

from campaigns.errors import ApplicationError
from campaigns.models import Campaign
from delivery import feeding, progress, services
from delivery.control import campaign_watch_errors
from delivery.pacing import pacer, stop_key
from delivery.sending import delivery_send
from delivery.transport import TransportError
from tests import factories

pytestmark = pytest.mark.django_db


def launched(people=1, **fields):
    recipients = [factories.recipient() for _ in range(people)]
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign, recipients


def test_a_paused_campaign_claims_nothing_and_resumes_where_it_stopped(teams, redis_client):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()

    services.campaign_pause(campaign_id=campaign.pk)
    assert delivery_send(delivery_id=delivery.pk).status == "not_claimed"
    services.campaign_resume(campaign_id=campaign.pk)
    pacer.resume(campaign_id=campaign.pk)  # on_commit work does not run inside a test transaction

    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1


def test_a_worker_past_its_claim_hands_the_delivery_back_when_the_campaign_pauses(teams):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()
    pacer.stop(campaign_id=campaign.pk, reason="paused")  # seen by a worker that already claimed

    assert delivery_send(delivery_id=delivery.pk).status == "pending"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert teams.client.messages(user=str(person.aad_object_id)) == []


def test_nothing_is_sent_for_a_campaign_cancelled_while_a_worker_held_its_delivery(teams):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()
    pacer.stop(campaign_id=campaign.pk, reason="cancelled")

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"

    delivery.refresh_from_db()
    assert delivery.skip_reason == "campaign_cancelled"
    assert teams.client.messages(user=str(person.aad_object_id)) == []


def test_cancel_skips_the_rest_and_later_tasks_send_nothing(teams):
    campaign, people = launched(3)
    first, *rest = campaign.deliveries.order_by("id")
    delivery_send(delivery_id=first.pk)

    services.campaign_cancel(campaign_id=campaign.pk)

    assert [delivery_send(delivery_id=d.pk).status for d in rest] == ["not_claimed", "not_claimed"]
    assert dict(campaign.deliveries.values_list("status", "skip_reason").order_by("id")[1:]) == {
        "skipped": "campaign_cancelled"
    }
    assert teams.client.stats()["messages"] == 1
    with pytest.raises(ApplicationError):
        services.campaign_resume(campaign_id=campaign.pk)


def test_a_campaign_pauses_itself_when_sends_fail_for_reasons_not_about_one_person(teams, settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    settings.BOT_APP_PASSWORD = "wrong"
    campaign, _ = launched(5)

    outcomes = [delivery_send(delivery_id=d.pk).status for d in campaign.deliveries.order_by("id")]

    campaign.refresh_from_db()
    assert outcomes[:3] == ["failed"] * 3 and outcomes[3:] == ["not_claimed"] * 2
    assert campaign.status == Campaign.Status.PAUSED
    assert "invalid_client" in campaign.status_reason and "401" in campaign.status_reason


def test_blocked_people_do_not_pause_a_campaign(teams, settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 2
    campaign, people = launched(3)
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "name": "x"} for p in people])
    for person in people:
        teams.client.block(str(person.aad_object_id))

    for delivery in campaign.deliveries.all():
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_progress_counts_rate_and_time_left_come_from_counters(teams):
    campaign, _ = launched(4)
    deliveries = list(campaign.deliveries.order_by("id"))
    for delivery in deliveries[:3]:
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    current = progress.read(campaign)

    assert (current["total"], current["sent"], current["remaining"]) == (4, 3, 1)
    assert current["rate_per_second"] > 0 and current["eta_seconds"] is not None


def test_progress_is_rebuilt_from_the_rows_when_redis_lost_it(teams, redis_client):
    campaign, _ = launched(2)
    delivery_send(delivery_id=campaign.deliveries.first().pk)
    redis_client.flushdb()

    campaign.refresh_from_db()
    current = progress.read(campaign)

    assert (current["total"], current["sent"], current["remaining"]) == (2, 1, 1)


# --- What resume does once it has committed (real commits, so on_commit work runs) ----------------


def queued_tasks(redis_client, queue="control") -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in redis_client.lrange(queue, 0, -1)]


def queued_deliveries(redis_client) -> list[int]:
    bodies = [json.loads(raw)["body"] for raw in redis_client.lrange(feeding.QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(body))[0][0] for body in bodies]


@pytest.fixture
def paused(teams, redis_client):
    """A running campaign of three people, fed once, then paused; nothing left in the queues."""
    campaign, people = launched(3)
    assert feeding.feed() == 3
    services.campaign_pause(campaign_id=campaign.pk)
    redis_client.delete(feeding.QUEUE, "control")  # the workers dropped what was queued: it is not claimed
    return campaign, people


@pytest.mark.django_db(transaction=True)
def test_it_clears_the_stop_flag_once_resume_commits(paused, redis_client, teams):
    campaign, [person, *_] = paused
    assert redis_client.exists(stop_key(campaign.pk))

    services.campaign_resume(campaign_id=campaign.pk)

    assert not redis_client.exists(stop_key(campaign.pk))
    first = campaign.deliveries.order_by("id").first()
    assert delivery_send(delivery_id=first.pk).status == "sent"  # a worker past its claim sends it
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_stop_flag_when_resume_rolls_back(paused, redis_client):
    campaign, _ = paused

    with pytest.raises(RuntimeError), transaction.atomic():
        services.campaign_resume(campaign_id=campaign.pk)
        raise RuntimeError("something after it in the same transaction failed")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert redis_client.exists(stop_key(campaign.pk))
    assert queued_tasks(redis_client) == []


@pytest.mark.django_db(transaction=True)
def test_it_resets_the_error_watch_once_resume_commits(paused, settings):
    campaign, _ = paused
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    # The watch as it stood when it paused the campaign: 3 failures not about one person, of 3 sends.
    progress.client().hset(progress.key(campaign.pk), mapping={"systemic": 3, "failed": 3})

    services.campaign_resume(campaign_id=campaign.pk)
    campaign_watch_errors(campaign_id=campaign.pk, error=TransportError(status=503, code="ServiceUnavailable",
                                                                          message="Teams is busy", permanent=False))

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # one more failure is not a reason to pause again


@pytest.mark.django_db(transaction=True)
def test_it_rewinds_the_feed_once_resume_commits(paused, redis_client):
    campaign, _ = paused
    assert feeding.feed() == 0  # fed already: the cursor is past every row

    services.campaign_resume(campaign_id=campaign.pk)

    assert feeding.feed() == 3  # the rows handed back while paused are queued again
    assert sorted(queued_deliveries(redis_client)) == sorted(campaign.deliveries.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_it_queues_a_feeding_tick_once_resume_commits(paused, redis_client):
    campaign, _ = paused

    services.campaign_resume(campaign_id=campaign.pk)

    assert queued_tasks(redis_client) == ["delivery.tasks.feed_deliveries"]
