"""Feeding the deliveries queue from the database, and writing large audiences in chunks."""

import base64
import json
import time

import pytest

from campaigns.models import Campaign
from delivery import feeding, progress, services
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


class FrozenClock:
    """The clock the pace is read by, stopped in the middle of a second: what "the last few
    seconds" are does not change while a test runs, whenever a second of the wall clock ends."""

    def __init__(self) -> None:
        self.now = int(time.time()) + 0.5

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr(progress, "time", frozen)
    return frozen


def sending_at(redis_client, clock: FrozenClock, per_second: int) -> None:
    """The workers sent ``per_second`` messages in each of the last few seconds."""
    now = int(clock.now)
    redis_client.delete(*[progress.ended_key(second) for second in range(now - 10, now + 1)])
    for second in range(now - 3, now):
        redis_client.set(progress.ended_key(second), per_second)


def test_the_queue_holds_what_the_workers_send_in_a_few_seconds_so_a_later_campaign_waits_seconds(
    settings, redis_client, clock
):
    settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER, settings.FEED_AHEAD_SECONDS = 10, 1000, 3.0
    launched_with(300)

    assert feeding.feed() == 10  # nothing sent yet: the floor
    for _ in range(8):
        redis_client.rpop(feeding.QUEUE)  # the workers took eight
    sending_at(redis_client, clock, 4)  # three seconds' worth: 12
    assert feeding.feed() == 10
    assert redis_client.llen(feeding.QUEUE) == 12

    sending_at(redis_client, clock, 50)  # unthrottled: deep, but never past what is left
    feeding.feed()
    assert redis_client.llen(feeding.QUEUE) == 150


def test_a_queue_emptied_by_prefetching_workers_is_not_deepened(settings, redis_client):
    settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER = 10, 1000
    launched_with(100)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)  # two workers starting up took everything into their prefetch

    feeding.feed()

    assert redis_client.llen(feeding.QUEUE) == 10  # nothing sent yet: still the floor


def test_the_queue_depth_never_passes_its_bound(settings, redis_client, clock):
    settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER = 10, 100
    launched_with(300)
    sending_at(redis_client, clock, 1000)

    feeding.feed()

    assert redis_client.llen(feeding.QUEUE) == 100


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


def test_a_campaign_launched_later_gets_its_share_of_a_small_top_up(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 10
    large = launched_with(30)
    feeding.feed()
    few = factories.audience(kind="static")
    few.members.add(*list(large.deliveries.values_list("recipient_id", flat=True)[:4]))
    later = factories.campaign(audience=few)
    services.campaign_launch(campaign_id=later.pk)
    for _ in range(8):
        redis_client.rpop(feeding.QUEUE)  # the workers took eight of the large campaign's

    feeding.feed()

    queued = set(queued_ids(redis_client))
    assert len(queued) == 10
    assert len(queued & set(later.deliveries.values_list("id", flat=True))) == 4


def test_messages_waiting_in_the_direct_queue_count_toward_the_depth(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 10
    launched_with(30)
    feeding.publish(list(range(1, 9)), queue=feeding.DIRECT_QUEUE)  # eight direct messages waiting

    assert feeding.feed() == 2  # the room left beside them
    assert redis_client.llen(feeding.QUEUE) == 2 and feeding.queue_depth() == 10


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


def test_the_pace_counts_deliveries_ended_sent_or_failed_not_those_skipped_at_launch(redis_client):
    campaign = launched_with(1)
    now = int(time.time())
    progress.record(campaign.pk, sent=1)
    progress.record(campaign.pk, failed=1)
    progress.record(campaign.pk, skipped=5000)

    ended = sum(int(redis_client.get(progress.ended_key(second)) or 0) for second in (now, now + 1))
    assert ended == 2
