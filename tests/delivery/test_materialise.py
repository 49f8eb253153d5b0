"""Writing a large audience's rows: several ranges at once, each on its own connection, committed in
order, resumed after a crash, stopped by a cancel. These run outside a test transaction, since the
other connections must see the campaign."""

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.db.models import Count, Max, Min
from django.utils import timezone

from campaigns.models import Campaign, OptOut, Recipient
from delivery import materialising, recovery, services
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chunks(settings):
    settings.MATERIALISE_CHUNK_SIZE = settings.MATERIALISE_RANGE_SIZE = 3
    settings.MATERIALISE_CONNECTIONS = 2


def launched_with(people: int) -> Campaign:
    for _ in range(people):
        factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)  # the first chunk; the task for the rest is queued
    return Campaign.objects.get(pk=campaign.pk)


def first_chunk_end() -> int:
    from django.conf import settings

    return Recipient.objects.aggregate(lowest=Min("id"))["lowest"] - 1 + settings.MATERIALISE_CHUNK_SIZE


def assert_everyone_once(campaign: Campaign) -> None:
    campaign.refresh_from_db()
    everyone = set(Recipient.objects.values_list("id", flat=True))
    rows = list(campaign.deliveries.values_list("recipient_id", flat=True))
    assert sorted(rows) == sorted(everyone)
    assert campaign.total_deliveries == len(everyone)
    assert campaign.materialised_at is not None


def test_ranges_written_at_once_give_each_person_exactly_one_row(chunks, redis_client):
    stopped = factories.recipient()
    OptOut.objects.create(recipient=stopped, source=OptOut.Source.TYPED_STOP)
    campaign = launched_with(20)
    assert campaign.deliveries.count() == 3

    with mock.patch.object(materialising, "_deliveries_insert", wraps=materialising._deliveries_insert) as ranges:
        written = materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end())

    readers = {call.kwargs["reader"] for call in ranges.call_args_list}
    assert len(ranges.call_args_list) == 6 and len(readers) == 2 and None not in readers  # COPY, one reader a lane
    assert written == 18
    assert_everyone_once(campaign)
    assert campaign.deliveries.get(recipient=stopped).skip_reason == Delivery.SkipReason.OPTED_OUT
    assert not redis_client.exists(materialising.materialising_key(campaign.pk))


def test_ranges_are_written_by_connections_of_their_own(chunks, redis_client):
    campaign = launched_with(12)
    threads = set()
    insert = materialising._deliveries_insert

    def watched(**kwargs):
        threads.add(threading.current_thread().name)
        return insert(**kwargs)

    with mock.patch.object(materialising, "_deliveries_insert", side_effect=watched):
        materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end())

    assert len(threads) == 2
    assert_everyone_once(campaign)


def test_a_materialisation_over_rows_already_written_adds_only_the_missing_ones(chunks, redis_client):
    campaign = launched_with(20)
    lowest = Recipient.objects.aggregate(lowest=Min("id"))["lowest"]
    Delivery.objects.create(campaign=campaign, recipient_id=lowest + 10)  # written meanwhile, say by a welcome
    Campaign.objects.filter(pk=campaign.pk).update(total_deliveries=4)

    assert materialising.campaign_materialise(campaign_id=campaign.pk, after=lowest - 1) == 16  # from the start again

    assert_everyone_once(campaign)


def test_two_materialisations_of_one_campaign_at_once_write_each_person_once(chunks, redis_client):
    campaign = launched_with(30)
    after = first_chunk_end()
    results, errors = [], []

    def materialise():
        from django.db import connection

        try:
            results.append(materialising.campaign_materialise(campaign_id=campaign.pk, after=after))
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    both = [threading.Thread(target=materialise) for _ in range(2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()

    assert errors == []
    assert sum(results) == 27  # each row counted by the one that wrote it
    assert_everyone_once(campaign)


def test_a_range_written_above_one_that_failed_is_rolled_back_so_the_rows_stay_a_prefix(chunks, redis_client):
    campaign = launched_with(20)
    after = first_chunk_end()
    failing = after + 2 * 3  # the lower range of the second step; the upper one is written meanwhile
    insert = materialising._deliveries_insert
    upper_written = threading.Event()

    def crash(**kwargs):
        if kwargs["after"] == failing:
            upper_written.wait(5)
            raise RuntimeError("the worker died")
        rows = insert(**kwargs)
        if kwargs["after"] == failing + 3:
            upper_written.set()
        return rows

    with mock.patch.object(materialising, "_deliveries_insert", side_effect=crash), pytest.raises(RuntimeError):
        materialising.campaign_materialise(campaign_id=campaign.pk, after=after)

    assert upper_written.is_set()
    campaign.refresh_from_db()
    last = campaign.deliveries.aggregate(last=Max("recipient_id"))["last"]
    assert last == failing
    assert campaign.deliveries.count() == campaign.total_deliveries == 9
    assert campaign.materialised_at is None


def test_a_materialisation_that_crashed_is_resumed_by_the_reconciler_and_completed_once(chunks, redis_client):
    campaign = launched_with(20)
    after = first_chunk_end()
    insert = materialising._deliveries_insert

    def crash(**kwargs):
        if kwargs["after"] >= after + 2 * 3:
            raise RuntimeError("the worker died")
        return insert(**kwargs)

    with mock.patch.object(materialising, "_deliveries_insert", side_effect=crash), pytest.raises(RuntimeError):
        materialising.campaign_materialise(campaign_id=campaign.pk, after=after)
    redis_client.delete(materialising.materialising_key(campaign.pk))  # its key expires with the task
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - timedelta(minutes=5))

    with mock.patch("delivery.jobs.materialise") as restart:
        assert recovery.reconcile()["materialisations_restarted"] == 1
    [(campaign_id, resume_after)] = [call.args for call in restart.call_args_list]
    materialising.campaign_materialise(campaign_id=campaign_id, after=resume_after)

    assert_everyone_once(campaign)
    duplicates = campaign.deliveries.values("recipient_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()


def test_a_cancel_while_a_range_is_written_leaves_nobody_pending_and_stops_the_writing(chunks, redis_client):
    campaign = launched_with(20)
    after = first_chunk_end()
    insert = materialising._deliveries_insert
    cancelled_during = after + 2 * 3

    def cancel_meanwhile(**kwargs):
        rows = insert(**kwargs)
        if kwargs["after"] == cancelled_during:
            canceller = threading.Thread(target=_cancel, args=(campaign.pk,))
            canceller.start()
            canceller.join(10)
            assert not canceller.is_alive()  # the cancel did not wait for this uncommitted range
        return rows

    with mock.patch.object(materialising, "_deliveries_insert", side_effect=cancel_meanwhile):
        materialising.campaign_materialise(campaign_id=campaign.pk, after=after)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert campaign.materialised_at is not None
    assert not campaign.deliveries.filter(status=Delivery.Status.PENDING).exists()
    assert campaign.deliveries.count() == campaign.total_deliveries == 9  # the ranges committed before it
    assert set(campaign.deliveries.values_list("skip_reason", flat=True)) == {Delivery.SkipReason.CAMPAIGN_CANCELLED}


def _cancel(campaign_id: int) -> None:
    from django.db import connection

    try:
        services.campaign_cancel(campaign_id=campaign_id)
    finally:
        connection.close()


def test_a_campaign_cancelled_before_its_task_runs_gets_no_more_rows(chunks, redis_client):
    campaign = launched_with(10)
    services.campaign_cancel(campaign_id=campaign.pk)

    assert materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end()) == 0

    campaign.refresh_from_db()
    assert campaign.deliveries.count() == campaign.total_deliveries == 3
    assert campaign.materialised_at is not None


@pytest.mark.parametrize("rows", [
    "SELECT no_such_column FROM campaigns_recipient",  # refused before any row
    "SELECT 1::bigint, 1::bigint, 1::bigint, 'pending'::text, ''::text, NULL::timestamptz "
    "UNION ALL SELECT 2, 1, 1 / (g - 2), 'pending', '', NULL FROM generate_series(1, 3) AS g",  # fails after a row
])
def test_an_error_computing_rows_for_copy_is_raised_and_nothing_is_written(rows, redis_client):
    from django.db import DatabaseError, connection, transaction

    with materialising._reader() as reader:
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            materialising._rows_copy(cursor, reader, rows, [])
        assert reader.execute("SELECT 41 + 1").fetchone() == (42,)  # the reader is usable again

    assert not Delivery.objects.exists()


def test_a_writer_failing_mid_copy_leaves_the_reader_ready_for_the_next_range(redis_client):
    from django.db import connection, transaction
    from psycopg import Copy

    rows = ("SELECT g::bigint, 1::bigint, g::bigint, 'pending'::text, ''::text, NULL::timestamptz "
            "FROM generate_series(1, 20000) AS g")  # over a megabyte: several writes
    with materialising._reader() as reader:
        with mock.patch.object(Copy, "write", side_effect=OSError("the writer's connection broke")):
            with pytest.raises(OSError), transaction.atomic(), connection.cursor() as cursor:
                materialising._rows_copy(cursor, reader, rows, [])
        assert reader.execute("SELECT 41 + 1").fetchone() == (42,)

    assert not Delivery.objects.exists()


# --- An approval covers the people it showed, also while the rows are written --------------------------

@pytest.fixture
def one_by_one(settings):
    settings.MATERIALISE_CHUNK_SIZE = settings.MATERIALISE_RANGE_SIZE = 1
    settings.APPROVAL_THRESHOLD = 2


def _launch_approved_for(people: int) -> Campaign:
    from campaigns.approvals import approval_fingerprint

    for _ in range(people):
        factories.recipient()
    campaign = factories.campaign()
    Campaign.objects.filter(pk=campaign.pk).update(
        approved_at=timezone.now(), approved_people=people, approved_fingerprint=approval_fingerprint(campaign=campaign)
    )
    services.campaign_launch(campaign_id=campaign.pk)
    return Campaign.objects.get(pk=campaign.pk)


@pytest.mark.parametrize("lanes", [1, 2])
def test_people_added_after_an_approved_launch_get_no_rows_and_the_campaign_pauses_saying_why(
    one_by_one, settings, redis_client, lanes
):
    settings.MATERIALISE_CONNECTIONS = lanes
    campaign = _launch_approved_for(3)
    for _ in range(20):  # moved into the audience while the launch's task is still writing rows
        factories.recipient()

    materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end())

    campaign.refresh_from_db()
    assert campaign.deliveries.count() == campaign.total_deliveries == 3
    assert campaign.status == Campaign.Status.PAUSED
    assert "the 3 people it was approved for" in campaign.status_reason
    assert campaign.materialised_at is not None  # nobody more is written, also after a resume
    assert not redis_client.exists(materialising.materialising_key(campaign.pk))


def test_an_unapproved_campaign_whose_audience_grows_past_the_threshold_while_written_pauses(
    one_by_one, settings, redis_client
):
    for _ in range(2):
        factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    for _ in range(10):
        factories.recipient()

    materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end())

    campaign.refresh_from_db()
    assert campaign.deliveries.count() == campaign.total_deliveries == settings.APPROVAL_THRESHOLD
    assert campaign.status == Campaign.Status.PAUSED
    assert "above which a campaign needs approval" in campaign.status_reason


def test_a_campaign_within_its_approval_is_written_whole(one_by_one, redis_client):
    campaign = _launch_approved_for(3)

    materialising.campaign_materialise(campaign_id=campaign.pk, after=first_chunk_end())

    assert_everyone_once(campaign)
    assert campaign.status == Campaign.Status.RUNNING
