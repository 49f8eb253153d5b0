"""Feeding the deliveries queue from the database, and writing large audiences in chunks."""

import base64
import json
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign
from delivery import feeding, materialising, progress, services
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db


def queued_ids(redis_client, queue: str = feeding.QUEUE) -> list[int]:
    ids = []
    for raw in redis_client.lrange(queue, 0, -1):
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

    materialising.campaign_materialise(campaign_id=campaign.pk, after=max(campaign.deliveries.values_list("recipient_id", flat=True)))

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



def test_it_writes_the_message_celery_itself_would_queue_for_the_task(redis_client):
    """Workers read the feeder's messages as Celery's own: the same headers, properties and body,
    each with its own ids, no reply address (results are ignored), and the task's time limit left
    to the worker, which applies the task's own when the message names none."""
    from delivery.tasks import deliver

    deliver.apply_async((7,), queue=feeding.QUEUE)
    [celerys] = [json.loads(raw) for raw in redis_client.lrange(feeding.QUEUE, 0, -1)]
    redis_client.delete(feeding.QUEUE)

    feeding.publish([7, 8])

    ours = [json.loads(raw) for raw in reversed(redis_client.lrange(feeding.QUEUE, 0, -1))]  # workers pop the far end
    for message in ours:
        task_id = message["headers"]["id"]
        assert str(uuid.UUID(task_id)) == task_id == message["headers"]["root_id"] == message["properties"]["correlation_id"]
        assert str(uuid.UUID(message["properties"]["delivery_tag"])) != task_id
        assert message["headers"]["timelimit"] == [None, None]
    assert len({m["headers"]["id"] for m in ours} | {m["properties"]["delivery_tag"] for m in ours}) == 4

    def without_ids(message):
        message = json.loads(json.dumps(message))
        for field in ("id", "root_id", "timelimit"):
            message["headers"].pop(field)
        for field in ("correlation_id", "delivery_tag", "reply_to"):
            message["properties"].pop(field, None)
        return message

    assert "reply_to" not in ours[0]["properties"]
    assert without_ids(ours[0]) == without_ids(celerys)
    args, kwargs, embed = json.loads(base64.b64decode(ours[1]["body"]))
    assert (args, kwargs, embed) == ([8], {}, json.loads(base64.b64decode(celerys["body"]))[2])
    assert ours[1]["headers"]["argsrepr"] == "(8,)"


def test_it_tells_the_cursor_as_it_stood_at_a_moment(redis_client):
    redis_client.zadd(feeding.fed_key(1), {"110": 100.0, "120": 200.0, "130": 300.0})
    redis_client.zadd(feeding.fed_key(2), {"999": 150.0})

    assert [feeding.fed_before(1, moment) for moment in (99.9, 100.0, 250.0, 300.0, 1e12)] == [0, 110, 120, 130, 130]
    assert feeding.fed_before(3, 1e12) == 0


def test_it_knows_nothing_of_a_campaign_never_checked_for_lost_rows(redis_client):
    assert feeding.lost_check(1) == feeding.LostCheck(clean=0, requeued=0, at=0.0)


def test_it_keeps_the_check_for_lost_rows_as_long_as_a_cursor(redis_client):
    feeding.lost_checked(1, feeding.LostCheck(clean=5, requeued=9, at=12.5))

    assert feeding.lost_check(1) == feeding.LostCheck(clean=5, requeued=9, at=12.5)
    assert feeding.KEEP_SECONDS - 5 < redis_client.ttl(feeding.check_key(1)) <= feeding.KEEP_SECONDS == 7 * 24 * 3600


def test_it_feeds_a_rewound_campaign_from_its_start_again_and_forgets_its_history(settings, redis_client):
    campaign = launched_with(3)
    other = launched_with(0)
    feeding.feed()
    for each in (campaign, other):
        feeding.lost_checked(each.pk, feeding.LostCheck(clean=1, requeued=2, at=3.0))
    redis_client.delete(feeding.QUEUE)

    feeding.rewind(campaign.pk)

    assert redis_client.exists(feeding.cursor_key(campaign.pk), feeding.fed_key(campaign.pk), feeding.check_key(campaign.pk)) == 0
    assert redis_client.exists(feeding.cursor_key(other.pk), feeding.fed_key(other.pk), feeding.check_key(other.pk)) == 3
    assert feeding.feed() == 3
    assert queued_ids(redis_client) == sorted(campaign.deliveries.values_list("id", flat=True))


@pytest.fixture
def feeder_clock(monkeypatch, redis_client):
    """The feeder's reading of Redis's clock, held at a whole second a test chooses."""
    from core.connections import redis_clock

    clock = {"now": float(int(redis_clock(redis_client)))}
    monkeypatch.setattr(feeding, "redis_clock", lambda client: clock["now"])
    return clock


def test_it_keeps_two_graces_and_a_minute_of_fed_history_and_the_cursor_for_a_week(settings, redis_client, feeder_clock):
    settings.RETRY_GRACE_SECONDS = 30
    campaign = launched_with(2)
    now = feeder_clock["now"]
    key = feeding.fed_key(campaign.pk)
    redis_client.zadd(key, {"1": now - 120.0, "2": now - 119.0})

    feeding.feed()

    assert redis_client.zrange(key, 0, -1, withscores=True) == [(b"2", now - 119.0), (str(max(campaign.deliveries.values_list("id", flat=True))).encode(), now)]
    for kept in (key, feeding.cursor_key(campaign.pk)):
        assert feeding.KEEP_SECONDS - 5 < redis_client.ttl(kept) <= feeding.KEEP_SECONDS


def test_it_tops_the_queue_up_only_once_a_quarter_of_it_has_drained(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 42  # a quarter: 10 (rounded down)
    launched_with(60)
    feeding.publish(list(range(1, 34)), queue=feeding.DIRECT_QUEUE)  # room for 9

    assert feeding.feed() == 0

    redis_client.rpop(feeding.DIRECT_QUEUE)  # room for 10
    assert feeding.feed() == 10
    assert feeding.queue_depth() == 42


def test_it_leaves_the_queue_alone_while_another_tick_feeds(redis_client):
    launched_with(3)
    redis_client.set(feeding.LOCK_KEY, "another tick's token")

    assert feeding.feed() == 0
    assert feeding.queue_depth() == 0


def test_it_holds_its_lock_for_thirty_seconds_at_most_and_lets_it_go_after(monkeypatch, redis_client):
    launched_with(1)
    held = []
    publish = feeding.publish
    monkeypatch.setattr(feeding, "publish", lambda *args, **kwargs: (held.append(redis_client.pttl(feeding.LOCK_KEY)), publish(*args, **kwargs)))

    feeding.feed()

    [ttl] = held
    assert 29_000 < ttl <= 30_000
    assert not redis_client.exists(feeding.LOCK_KEY)


def fed_per_campaign(redis_client, campaigns) -> list[int]:
    queued = set(queued_ids(redis_client))
    return [len(queued & set(campaign.deliveries.values_list("id", flat=True))) for campaign in campaigns]


def test_it_shares_the_room_evenly_in_launch_order_the_last_taking_what_is_left(settings, redis_client, feeder_clock):
    from django.utils import timezone

    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 7
    campaigns = [launched_with(10) for _ in range(3)]
    for age, campaign in zip((3, 2, 1), reversed(campaigns)):  # launched in the reverse order of their ids
        Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - timezone.timedelta(minutes=age))
    feeder_clock["now"] -= feeder_clock["now"] % 3  # the first in launch order has the first turn

    assert feeding.feed() == 7

    assert fed_per_campaign(redis_client, reversed(campaigns)) == [3, 3, 1]


def test_it_starts_with_the_next_campaign_at_each_second_of_its_clock(settings, redis_client, feeder_clock):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 1
    first, second = launched_with(3), launched_with(3)
    feeder_clock["now"] -= feeder_clock["now"] % 2 - 1  # an odd second: the second campaign's turn

    assert feeding.feed() == 1

    assert fed_per_campaign(redis_client, [first, second]) == [0, 1]


def test_campaigns_launched_at_the_same_moment_take_their_turns_in_the_order_they_were_made(
    settings, redis_client, feeder_clock
):
    from django.utils import timezone

    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 1
    first, second = launched_with(3), launched_with(3)
    moment = timezone.now()
    Campaign.objects.filter(pk__in=[first.pk, second.pk]).update(launched_at=moment)
    for status in (Campaign.Status.PAUSED, Campaign.Status.RUNNING):  # the first's row rewritten: it lies last now
        Campaign.objects.filter(pk=first.pk).update(status=status)
    feeder_clock["now"] -= feeder_clock["now"] % 2  # an even second: the first campaign's turn

    with CaptureQueriesContext(connection) as queries:
        assert feeding.feed() == 1

    assert fed_per_campaign(redis_client, [first, second]) == [1, 0]
    # Where the rows lie decides the order of a tie only by chance: the order is asked of PostgreSQL.
    [running] = [query["sql"] for query in queries if 'FROM "campaigns_campaign"' in query["sql"]]
    assert running.endswith('ORDER BY "campaigns_campaign"."launched_at" ASC, 1 ASC')  # 1: the id, selected first


def test_it_asks_no_further_campaign_for_rows_once_the_room_is_filled(settings, redis_client, feeder_clock, monkeypatch):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 1
    campaigns = [launched_with(3) for _ in range(3)]
    feeder_clock["now"] -= feeder_clock["now"] % 3  # the first campaign's turn
    asked, real_next_batch = [], feeding._next_batch
    monkeypatch.setattr(feeding, "_next_batch", lambda client, campaign_id, limit, mark: (
        asked.append(campaign_id) or real_next_batch(client, campaign_id, limit, mark)))

    assert feeding.feed() == 1

    assert asked == [campaigns[0].pk]  # one query, not one more per running campaign


def test_it_gives_the_room_a_small_campaign_leaves_to_the_others_to_the_last_message(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 10
    large = launched_with(20)
    few = factories.audience(kind="static")
    few.members.add(*list(large.deliveries.values_list("recipient_id", flat=True)[:4]))
    small = factories.campaign(audience=few)
    services.campaign_launch(campaign_id=small.pk)

    assert feeding.feed() == 10

    assert fed_per_campaign(redis_client, [large, small]) == [6, 4]


def test_it_never_feeds_welcomes_which_are_queued_as_people_arrive(redis_client):
    from delivery import welcome

    person = factories.recipient()
    campaign = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=campaign.pk)
    welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))
    redis_client.delete(feeding.DIRECT_QUEUE)

    assert feeding.feed() == 0
    assert feeding.queue_depth() == 0


def test_it_feeds_a_campaign_without_a_cursor_from_its_first_unsettled_row(redis_client):
    from delivery.settled import first_unsettled

    campaign = launched_with(4)
    ids = list(campaign.deliveries.order_by("id").values_list("id", flat=True))
    Delivery.objects.filter(pk__in=[ids[0], ids[2]]).update(status=Delivery.Status.SENT)
    assert first_unsettled(campaign.pk, 0) == ids[1]

    assert feeding.feed() == 2

    assert queued_ids(redis_client) == [ids[1], ids[3]]
