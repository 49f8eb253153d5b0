"""The reconciler finds what workers and Redis lost, from the rows."""

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from delivery import feeding, progress, recovery, services
from delivery.models import Delivery
from tests import factories
from tests.delivery.test_feeding import queued_ids

pytestmark = pytest.mark.django_db


def launched(people=1):
    for _ in range(people):
        factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign


def test_a_delivery_whose_worker_died_while_sending_is_marked_ambiguous_and_retried(settings, redis_client):
    campaign = launched()
    delivery = campaign.deliveries.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.SENDING, claimed_at=timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    )

    result = recovery.reconcile()

    delivery.refresh_from_db()
    assert result["lease_expired"] == 1
    assert (delivery.status, delivery.ambiguous, delivery.error_code) == ("retrying", True, "WorkerLost")
    assert queued_ids(redis_client) == [delivery.pk]


def test_a_delivery_still_within_its_lease_is_left_to_its_worker(redis_client):
    campaign = launched()
    Delivery.objects.filter(campaign=campaign).update(status=Delivery.Status.SENDING, claimed_at=timezone.now())
    assert recovery.reconcile()["lease_expired"] == 0
    assert campaign.deliveries.get().status == Delivery.Status.SENDING


def test_a_retry_whose_message_was_lost_is_queued_again(settings, redis_client):
    campaign = launched()
    delivery = campaign.deliveries.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 5)
    )

    recovery.reconcile()

    assert queued_ids(redis_client) == [delivery.pk]


def fed_ago(redis_client, campaign, seconds: float) -> None:
    """The feeder's ticks for the campaign happened ``seconds`` earlier than they did."""
    key = feeding.fed_key(campaign.pk)
    redis_client.zadd(key, {member: score - seconds for member, score in redis_client.zrange(key, 0, -1, withscores=True)})


def test_pending_deliveries_whose_queued_messages_were_lost_are_queued_again(settings, redis_client):
    campaign = launched(3)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)  # a worker killed with them in its prefetch
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)

    assert recovery.reconcile()["fed_again"] == 3

    assert queued_ids(redis_client) == sorted(campaign.deliveries.values_list("id", flat=True))


def test_pending_deliveries_fed_moments_ago_are_left_to_the_queue(settings, redis_client):
    campaign = launched(3)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)  # taken by workers that have not claimed them yet
    Delivery.objects.filter(campaign=campaign).update(created_at=timezone.now() - timedelta(minutes=5))

    assert recovery.reconcile()["fed_again"] == 0
    assert queued_ids(redis_client) == []


def test_only_the_rows_fed_before_the_grace_are_queued_again(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 2
    campaign = launched(4)
    feeding.feed()
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)
    redis_client.delete(feeding.QUEUE)
    feeding.feed()  # the next two, just now

    assert recovery.reconcile()["fed_again"] == 2

    ids = sorted(campaign.deliveries.values_list("id", flat=True))
    assert queued_ids(redis_client) == ids  # the first two again, beside the next two, each once


def test_rows_queued_again_are_given_a_grace_before_they_are_queued_once_more(settings, redis_client):
    campaign = launched(3)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)
    assert recovery.reconcile()["fed_again"] == 3
    redis_client.delete(feeding.QUEUE)  # lost again, with the worker that took them

    assert recovery.reconcile()["fed_again"] == 0  # within the grace: they may still be on their way

    at = float(redis_client.hget(feeding.check_key(campaign.pk), "at"))
    redis_client.hset(feeding.check_key(campaign.pk), "at", at - settings.RETRY_GRACE_SECONDS - 1)
    assert recovery.reconcile()["fed_again"] == 3
    assert queued_ids(redis_client) == sorted(campaign.deliveries.values_list("id", flat=True))


def test_the_search_for_lost_rows_starts_past_those_found_settled(settings, redis_client):
    campaign = launched(3)
    feeding.feed()
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)
    campaign.deliveries.update(status=Delivery.Status.SENT)
    assert recovery.reconcile()["fed_again"] == 0

    assert feeding.lost_check(campaign.pk) == feeding.LostCheck(clean=max(campaign.deliveries.values_list("id", flat=True)))


def test_what_a_cancel_left_retrying_ends_skipped(redis_client):
    from delivery.services import campaign_cancel

    campaign = launched(2)
    campaign_cancel(campaign_id=campaign.pk)
    # A send in flight at the cancel failed afterwards and was put back to retrying.
    first = campaign.deliveries.order_by("id").first()
    Delivery.objects.filter(pk=first.pk).update(status=Delivery.Status.RETRYING, skip_reason="")

    assert recovery.reconcile()["swept"] == 1

    first.refresh_from_db()
    assert (first.status, first.skip_reason) == ("skipped", "campaign_cancelled")


def test_a_materialisation_whose_task_was_lost_is_restarted_from_the_last_person(settings, redis_client):
    import base64
    import json

    from campaigns.models import Campaign
    from delivery.materialising import materialising_key

    settings.MATERIALISE_CHUNK_SIZE = settings.MATERIALISE_RANGE_SIZE = 2
    for _ in range(5):
        factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)  # the first chunk; the task for the rest is lost
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - timedelta(minutes=5))
    redis_client.set(materialising_key(campaign.pk), 1)
    assert recovery.reconcile()["materialisations_restarted"] == 0  # a live task is writing it
    redis_client.delete(materialising_key(campaign.pk))

    assert recovery.reconcile()["materialisations_restarted"] == 1

    [raw] = redis_client.lrange("control", 0, -1)
    message = json.loads(raw)
    args = json.loads(base64.b64decode(message["body"]))[0]
    assert message["headers"]["task"] == "delivery.tasks.campaign_materialise"
    assert args == [campaign.pk, max(campaign.deliveries.values_list("recipient_id", flat=True))]


def test_a_welcome_whose_message_was_lost_is_queued_again_where_welcomes_go(settings, redis_client):
    import base64
    import json

    from campaigns.models import Campaign
    from delivery import welcome

    person = factories.recipient()
    campaign = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=campaign.pk)
    [delivery_id] = welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))  # its message is lost
    Delivery.objects.filter(pk=delivery_id).update(created_at=timezone.now() - timedelta(minutes=5))

    recovery.reconcile()

    [raw] = redis_client.lrange(feeding.DIRECT_QUEUE, 0, -1)
    assert json.loads(base64.b64decode(json.loads(raw)["body"]))[0] == [delivery_id]


def test_a_delivery_whose_worker_died_at_every_attempt_fails_after_the_last_and_the_campaign_completes(
    settings, redis_client
):
    from campaigns.models import Campaign

    campaign = launched()
    delivery = campaign.deliveries.get()
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.SENDING, attempts=settings.DELIVERY_MAX_ATTEMPTS, claimed_at=expired
    )

    result = recovery.reconcile()

    delivery.refresh_from_db()
    assert result["lease_expired"] == 1
    assert (delivery.status, delivery.ambiguous, delivery.error_code) == ("failed", True, "WorkerLost")
    assert delivery.finished_at is not None
    assert queued_ids(redis_client) == []
    assert services.campaigns_complete_finished() == [campaign.pk]
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.COMPLETED


def test_a_delivery_taken_back_twice_counts_once_as_ambiguous(settings, redis_client):
    campaign = launched()
    delivery = campaign.deliveries.get()
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    for _ in range(2):
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SENDING, attempts=1, claimed_at=expired)
        recovery.reconcile()

    assert int(redis_client.hget(progress.key(campaign.pk), "ambiguous")) == 1


def counted(redis_client, campaign, field: str) -> int:
    return int(redis_client.hget(progress.key(campaign.pk), field) or 0)


def test_it_counts_deliveries_failed_after_their_worker_died_as_failed_and_each_ambiguous_once(settings, redis_client):
    campaign = launched(2)
    fresh, already = campaign.deliveries.order_by("id")
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    campaign.deliveries.update(status=Delivery.Status.SENDING, attempts=settings.DELIVERY_MAX_ATTEMPTS, claimed_at=expired)
    Delivery.objects.filter(pk=already.pk).update(ambiguous=True)  # counted when an earlier attempt was taken back
    failed, ambiguous = counted(redis_client, campaign, "failed"), counted(redis_client, campaign, "ambiguous")

    recovery.reconcile()

    assert counted(redis_client, campaign, "failed") - failed == 2
    assert counted(redis_client, campaign, "ambiguous") - ambiguous == 1
    assert redis_client.keys(progress.key("None")) == []


def test_it_counts_a_delivery_taken_back_from_a_dead_worker_as_ambiguous(settings, redis_client):
    campaign = launched()
    expired = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS + 1)
    campaign.deliveries.update(status=Delivery.Status.SENDING, attempts=1, claimed_at=expired)

    recovery.reconcile()

    assert counted(redis_client, campaign, "ambiguous") == 1
    assert counted(redis_client, campaign, "failed") == 0


@pytest.mark.parametrize("due_in", [-20, 10], ids=["within-the-grace", "not-yet-due"])
def test_it_leaves_a_retry_to_its_own_countdown_until_the_grace_has_passed(settings, redis_client, due_in):
    settings.RETRY_GRACE_SECONDS = 30
    campaign = launched()
    campaign.deliveries.update(status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() + timedelta(seconds=due_in))

    assert recovery.reconcile()["requeued"] == 0
    assert queued_ids(redis_client) == []


def test_it_leaves_a_paused_campaigns_lost_retries_for_its_resume(settings, redis_client):
    from campaigns.models import Campaign

    campaign = launched()
    campaign.deliveries.update(
        status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 5)
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)

    assert recovery.reconcile()["requeued"] == 0
    assert queued_ids(redis_client) == []


def welcomed(redis_client, age: timedelta, status=Delivery.Status.PENDING):
    from campaigns.models import Campaign
    from delivery import welcome

    person = factories.recipient()
    campaign = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=campaign.pk)
    [delivery_id] = welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))
    Delivery.objects.filter(pk=delivery_id).update(created_at=timezone.now() - age, status=status)
    redis_client.delete(feeding.DIRECT_QUEUE)  # its message is lost
    return delivery_id


@pytest.mark.parametrize(
    "age,status",
    [(timedelta(seconds=5), Delivery.Status.PENDING), (timedelta(minutes=5), Delivery.Status.SENT)],
    ids=["written-moments-ago", "already-sent"],
)
def test_it_queues_again_only_welcomes_left_pending_past_the_grace(settings, redis_client, age, status):
    welcomed(redis_client, age, status)

    assert recovery.reconcile()["requeued"] == 0
    assert redis_client.llen(feeding.DIRECT_QUEUE) == 0


def test_it_counts_lost_retries_and_lost_welcomes_together_as_requeued(settings, redis_client):
    campaign = launched()
    campaign.deliveries.update(
        status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 5)
    )
    welcome_id = welcomed(redis_client, timedelta(minutes=5))

    assert recovery.reconcile()["requeued"] == 2
    assert queued_ids(redis_client) == list(campaign.deliveries.values_list("id", flat=True))
    [raw] = redis_client.lrange(feeding.DIRECT_QUEUE, 0, -1)
    assert json.loads(base64.b64decode(json.loads(raw)["body"]))[0] == [welcome_id]


@pytest.fixture
def reconciler_clock(monkeypatch, redis_client):
    """The reconciler's reading of Redis's clock, held where a test puts it (whole seconds, so that
    moving it by the grace and back lands on the same float)."""
    from core.connections import redis_clock

    clock = {"now": float(int(redis_clock(redis_client)))}
    monkeypatch.setattr(recovery, "redis_clock", lambda client: clock["now"])
    return clock


def lost_after_feeding(settings, redis_client, people: int):
    """A campaign whose rows were all fed a minute more than a grace ago, their messages lost."""
    campaign = launched(people)
    feeding.feed()
    redis_client.delete(feeding.QUEUE)
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 60)
    return campaign, list(campaign.deliveries.order_by("id").values_list("id", flat=True))


def test_it_records_from_where_rows_may_be_lost_and_which_it_queued_again_when(settings, redis_client, reconciler_clock):
    campaign, ids = lost_after_feeding(settings, redis_client, 4)
    Delivery.objects.filter(pk=ids[0]).update(status=Delivery.Status.SENT)

    assert recovery.reconcile()["fed_again"] == 3

    assert feeding.lost_check(campaign.pk) == feeding.LostCheck(clean=ids[0], requeued=ids[3], at=reconciler_clock["now"])
    assert queued_ids(redis_client) == ids[1:]


def test_it_queues_rows_again_once_a_whole_grace_has_passed_since_it_last_did(settings, redis_client, reconciler_clock):
    campaign, ids = lost_after_feeding(settings, redis_client, 4)
    Delivery.objects.filter(pk=ids[0]).update(status=Delivery.Status.SENT)
    recovery.reconcile()
    redis_client.delete(feeding.QUEUE)

    reconciler_clock["now"] += settings.RETRY_GRACE_SECONDS

    assert recovery.reconcile()["fed_again"] == 3
    assert queued_ids(redis_client) == ids[1:]


def test_it_gives_a_single_row_queued_again_its_grace_too(settings, redis_client, reconciler_clock):
    campaign, ids = lost_after_feeding(settings, redis_client, 1)
    assert recovery.reconcile()["fed_again"] == 1
    redis_client.delete(feeding.QUEUE)

    reconciler_clock["now"] += settings.RETRY_GRACE_SECONDS - 1

    assert recovery.reconcile()["fed_again"] == 0


def test_it_queues_lost_rows_past_one_batch_at_its_next_look_and_not_those_just_queued(settings, redis_client):
    campaign, ids = lost_after_feeding(settings, redis_client, 4)
    settings.FEED_HIGH_WATER = 2

    assert recovery.reconcile()["fed_again"] == 2
    assert queued_ids(redis_client) == ids[:2]
    redis_client.delete(feeding.QUEUE)

    assert recovery.reconcile()["fed_again"] == 2
    assert queued_ids(redis_client) == ids[2:]


def test_it_queues_a_direct_messages_lost_rows_again_on_the_direct_queue(settings, redis_client):
    from delivery.services import campaign_send_direct

    people = [factories.recipient() for _ in range(2)]
    direct = campaign_send_direct(name="Laptop ready", template_id=factories.template().pk,
                                  category=factories.category(), external_ids=[p.external_id for p in people])
    feeding.feed()
    redis_client.delete(feeding.DIRECT_QUEUE)
    fed_ago(redis_client, direct, settings.RETRY_GRACE_SECONDS + 1)

    assert recovery.reconcile()["fed_again"] == 2

    assert queued_ids(redis_client) == []
    assert queued_ids(redis_client, feeding.DIRECT_QUEUE) == sorted(direct.deliveries.values_list("id", flat=True))


def test_it_looks_for_lost_rows_in_every_running_campaign_and_counts_them_all(settings, redis_client):
    older = launched(1)
    newer = launched(1)
    never_fed = launched(0)  # its turn comes first, with nothing fed to lose
    feeding.feed()
    redis_client.delete(feeding.QUEUE, feeding.fed_key(never_fed.pk), feeding.cursor_key(never_fed.pk))
    Delivery.objects.filter(campaign=never_fed).delete()
    for campaign in (older, newer):
        fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)

    assert recovery.reconcile()["fed_again"] == 3

    assert queued_ids(redis_client) == sorted(Delivery.objects.filter(campaign__in=[older, newer]).values_list("id", flat=True))


def test_it_leaves_a_paused_campaigns_lost_rows_for_its_resume(settings, redis_client):
    from campaigns.models import Campaign

    campaign, ids = lost_after_feeding(settings, redis_client, 2)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)

    assert recovery.reconcile()["fed_again"] == 0
    assert queued_ids(redis_client) == []


def cancelled_leaving(statuses, cancelled_ago=timedelta(minutes=1)):
    """A cancelled campaign whose rows, after the cancel, stand in ``statuses`` (sends in flight then)."""
    from campaigns.models import Campaign
    from delivery.services import campaign_cancel

    campaign = launched(len(statuses))
    campaign_cancel(campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(cancelled_at=timezone.now() - cancelled_ago)
    for delivery, status in zip(campaign.deliveries.order_by("id"), statuses):
        Delivery.objects.filter(pk=delivery.pk).update(status=status, skip_reason="", finished_at=None)
    return campaign


def test_it_ends_only_the_unsettled_rows_a_cancel_left_skipped_and_counts_them(redis_client):
    S = Delivery.Status
    campaign = cancelled_leaving([S.RETRYING, S.SENDING, S.SENT, S.PENDING])
    skipped = counted(redis_client, campaign, "skipped")

    assert recovery.reconcile()["swept"] == 2

    rows = list(campaign.deliveries.order_by("id").values_list("status", "skip_reason"))
    assert rows == [("skipped", "campaign_cancelled"), ("sending", ""), ("sent", ""), ("skipped", "campaign_cancelled")]
    assert not campaign.deliveries.filter(status=S.SKIPPED, finished_at__isnull=True).exists()
    assert counted(redis_client, campaign, "skipped") - skipped == 2


def test_it_sweeps_every_campaign_cancelled_within_the_day_and_no_older_one(redis_client):
    S = Delivery.Status
    long_ago = cancelled_leaving([S.RETRYING], cancelled_ago=timedelta(hours=25))
    older = cancelled_leaving([S.RETRYING, S.SENT])
    newer = cancelled_leaving([S.RETRYING, S.RETRYING, S.SENT])
    settled = cancelled_leaving([S.SENT])  # looked at first, with nothing left to end

    assert recovery.reconcile()["swept"] == 1 + 2

    def first_rows(campaign, count):
        return list(campaign.deliveries.order_by("id").values_list("status", flat=True)[:count])

    assert set(Delivery.objects.filter(status=S.RETRYING).values_list("campaign_id", flat=True)) == {long_ago.pk}
    assert (first_rows(older, 2), first_rows(newer, 3), first_rows(settled, 1)) == (
        ["skipped", "sent"], ["skipped", "skipped", "sent"], ["sent"]
    )


def stalled_writing(settings, redis_client, people=5, launched_ago=timedelta(minutes=5), **fields):
    """A campaign whose first chunk of rows is written and whose task writing the rest was lost."""
    from campaigns.models import Campaign
    from delivery.materialising import materialising_key

    settings.MATERIALISE_CHUNK_SIZE = settings.MATERIALISE_RANGE_SIZE = 2
    for _ in range(people):
        factories.recipient()
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - launched_ago)
    redis_client.delete(materialising_key(campaign.pk), "control")
    return campaign


def restarted_tasks(redis_client) -> list:
    messages = [json.loads(raw) for raw in reversed(redis_client.lrange("control", 0, -1))]
    assert {m["headers"]["task"] for m in messages} <= {"delivery.tasks.campaign_materialise"}
    return sorted(json.loads(base64.b64decode(m["body"]))[0] for m in messages)


def test_it_restarts_every_lost_writing_from_its_last_person_or_from_the_start(settings, redis_client):
    from delivery.materialising import materialising_key

    with_rows = stalled_writing(settings, redis_client)
    without_rows = stalled_writing(settings, redis_client)
    Delivery.objects.filter(campaign=without_rows).delete()  # its first chunk never written
    alive = stalled_writing(settings, redis_client)  # looked at first: its task is still writing
    redis_client.set(materialising_key(alive.pk), 1)

    assert recovery.reconcile()["materialisations_restarted"] == 2

    last = max(with_rows.deliveries.values_list("recipient_id", flat=True))
    assert restarted_tasks(redis_client) == sorted([[with_rows.pk, last], [without_rows.pk, 0]])


@pytest.mark.parametrize("case", ["all-written", "just-launched", "paused", "welcome"])
def test_it_leaves_alone_writings_that_are_done_young_paused_or_of_welcomes(settings, redis_client, case):
    from campaigns.models import Campaign

    if case == "all-written":
        campaign = stalled_writing(settings, redis_client, people=2)
        campaign.refresh_from_db()
        assert campaign.materialised_at is not None
    elif case == "just-launched":
        stalled_writing(settings, redis_client, launched_ago=timedelta(seconds=settings.RETRY_GRACE_SECONDS - 10))
    elif case == "paused":
        campaign = stalled_writing(settings, redis_client)
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    else:
        campaign = stalled_writing(settings, redis_client, kind=Campaign.Kind.WELCOME)
        assert Campaign.objects.get(pk=campaign.pk).materialised_at is None

    assert recovery.reconcile()["materialisations_restarted"] == 0
    assert restarted_tasks(redis_client) == []


def test_it_queues_again_only_rows_still_retrying_whatever_their_last_due_time(settings, redis_client):
    campaign = launched(3)
    long_ago = timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 5)
    campaign.deliveries.update(status=Delivery.Status.SENT, next_attempt_at=long_ago)  # retried, then sent
    retrying = campaign.deliveries.order_by("id").first()
    Delivery.objects.filter(pk=retrying.pk).update(status=Delivery.Status.RETRYING)

    assert recovery.reconcile()["requeued"] == 1
    assert queued_ids(redis_client) == [retrying.pk]


def test_it_queues_an_overdue_retry_of_a_direct_message_again_on_the_direct_queue(settings, redis_client):
    from delivery.services import campaign_send_direct

    people = [factories.recipient() for _ in range(2)]
    direct = campaign_send_direct(name="Laptop ready", template_id=factories.template().pk,
                                  category=factories.category(), external_ids=[p.external_id for p in people])
    campaign = launched(1)
    long_ago = timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 5)
    Delivery.objects.filter(campaign__in=[direct, campaign]).update(status=Delivery.Status.RETRYING, next_attempt_at=long_ago)

    assert recovery.reconcile()["requeued"] == 2 + 3  # the announcement reaches all three people

    assert queued_ids(redis_client, feeding.DIRECT_QUEUE) == sorted(direct.deliveries.values_list("id", flat=True))
    assert queued_ids(redis_client) == sorted(campaign.deliveries.values_list("id", flat=True))


def test_direct_messages_and_welcomes_go_on_the_direct_queue_and_campaigns_on_theirs():
    from campaigns.models import Campaign

    assert [feeding.queue_for(kind) for kind in (Campaign.Kind.DIRECT, Campaign.Kind.WELCOME, Campaign.Kind.ANNOUNCEMENT)] == [
        feeding.DIRECT_QUEUE, feeding.DIRECT_QUEUE, feeding.QUEUE]


def test_it_leaves_rows_fed_within_the_grace_in_the_queue_whatever_room_it_has(settings, redis_client):
    settings.FEED_LOW_WATER = settings.FEED_HIGH_WATER = 2
    campaign = launched(4)
    feeding.feed()
    fed_ago(redis_client, campaign, settings.RETRY_GRACE_SECONDS + 1)
    redis_client.delete(feeding.QUEUE)
    feeding.feed()  # the next two, just now
    redis_client.delete(feeding.QUEUE)
    settings.FEED_HIGH_WATER = 100

    assert recovery.reconcile()["fed_again"] == 2

    assert queued_ids(redis_client) == sorted(campaign.deliveries.values_list("id", flat=True))[:2]
