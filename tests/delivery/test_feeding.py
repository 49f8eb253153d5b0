"""Feeding the deliveries queue from the database, and writing large audiences in chunks."""

import base64
import json

import pytest

from campaigns.models import Campaign
from delivery import feeding, services
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db


def queued_ids(redis_client) -> list[int]:
    ids = []
    for raw in redis_client.lrange(feeding.QUEUE, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "delivery.tasks.deliver"
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return sorted(ids)


def launched_with(people: int, **fields) -> Campaign:
    for _ in range(people):
        factories.recipient()
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign


def test_the_queue_is_filled_up_to_its_bound_and_no_further(settings, redis_client):
    settings.FEED_HIGH_WATER = 40
    campaign = launched_with(100)

    first = feeding.feed()
    second = feeding.feed()

    assert (first, second) == (40, 0)
    pending = list(campaign.deliveries.order_by("id").values_list("id", flat=True))
    assert queued_ids(redis_client) == pending[:40]


def drained(redis_client, taken: int, seconds: float) -> None:
    """The workers took ``taken`` messages over the ``seconds`` since the last tick."""
    for _ in range(taken):
        redis_client.rpop(feeding.QUEUE)
    at = float(redis_client.hget(feeding.DRAIN_KEY, "at"))
    redis_client.hset(feeding.DRAIN_KEY, "at", at - seconds)


def test_the_queue_holds_what_the_workers_take_in_a_few_seconds_so_a_later_campaign_waits_seconds(settings, redis_client):
    settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER, settings.FEED_AHEAD_SECONDS = 10, 1000, 3.0
    launched_with(300)

    assert feeding.feed() == 10  # nothing measured yet: the floor
    drained(redis_client, taken=8, seconds=2.0)  # 4 a second: 12 is three seconds' worth
    feeding.feed()
    assert redis_client.llen(feeding.QUEUE) == 12

    drained(redis_client, taken=12, seconds=1.0)  # ran dry: 12 a second, and more could have been taken
    feeding.feed()
    assert redis_client.llen(feeding.QUEUE) == 36

    drained(redis_client, taken=36, seconds=0.05)  # unthrottled: deep, but never past the bound
    feeding.feed()
    assert redis_client.llen(feeding.QUEUE) == 244 == 300 - 10 - 10 - 36  # every row left, under the bound


def test_the_depth_is_measured_afresh_after_an_idle_spell(settings, redis_client):
    settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER = 10, 1000
    launched_with(100)
    feeding.feed()
    drained(redis_client, taken=10, seconds=3600)  # ran dry, an hour ago

    feeding.feed()

    assert redis_client.llen(feeding.QUEUE) == 10  # the floor again, not twice the last depth


def test_feeding_resumes_after_the_cursor_as_workers_drain_the_queue(settings, redis_client):
    settings.FEED_HIGH_WATER = 40
    campaign = launched_with(100)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)  # the workers took them

    feeding.feed()

    pending = list(campaign.deliveries.order_by("id").values_list("id", flat=True))
    assert queued_ids(redis_client) == pending[40:80]


def test_a_small_campaign_is_not_stuck_behind_a_large_one(settings, redis_client):
    settings.FEED_HIGH_WATER = 200
    large = launched_with(300)
    few = factories.audience(kind="static")
    few.members.add(*list(large.deliveries.values_list("recipient_id", flat=True)[:2]))
    small = factories.campaign(audience=few)
    services.campaign_launch(campaign_id=small.pk)

    feeding.feed()

    queued = set(queued_ids(redis_client))
    assert set(small.deliveries.values_list("id", flat=True)) <= queued
    assert len(queued) <= 200 and queued & set(large.deliveries.values_list("id", flat=True))


def test_paused_campaigns_are_not_fed(settings, redis_client):
    campaign = launched_with(5)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    assert feeding.feed() == 0


def test_a_large_audience_is_written_in_chunks_and_only_then_can_complete(settings, redis_client):
    settings.MATERIALISE_CHUNK_SIZE = settings.MATERIALISE_RANGE_SIZE = 10
    campaign = launched_with(25)
    assert campaign.deliveries.count() == 10
    campaign.deliveries.update(status=Delivery.Status.SENT)
    assert services.campaigns_complete_finished() == []  # the rest is not written yet

    services.campaign_materialise(campaign_id=campaign.pk, after=max(campaign.deliveries.values_list("recipient_id", flat=True)))

    campaign.refresh_from_db()
    assert campaign.deliveries.count() == 25 and campaign.materialised_at is not None
    assert campaign.deliveries.filter(status=Delivery.Status.PENDING).count() == 15


def test_direct_messages_get_their_own_queue_so_a_large_campaign_never_delays_them(settings, redis_client):
    from delivery.services import campaign_send_direct

    large = launched_with(50)
    person = large.deliveries.first().recipient
    direct = campaign_send_direct(name="Laptop ready", template_id=large.template_id, category=large.category,
                                  external_ids=[person.external_id])

    feeding.feed()

    [raw] = redis_client.lrange(feeding.DIRECT_QUEUE, 0, -1)
    args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
    assert args == [direct.deliveries.get().pk]
    assert len(queued_ids(redis_client)) == 50  # the campaign's own, on the deliveries queue
