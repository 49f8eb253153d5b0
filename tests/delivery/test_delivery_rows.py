"""Delivery rows: one id per campaign and person, found through the primary key by every statement
the engine runs, and gone with their campaign or their person."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign
from delivery import feeding, message_changes, progress, recovery, reports, services
from delivery.models import Delivery, DeliveryChange, MessageChange
from tests import factories

pytestmark = pytest.mark.django_db


def launched(people) -> Campaign:
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign


def test_a_delivery_id_is_its_campaign_and_person_in_one_number():
    person = factories.recipient()
    campaign = launched([person])

    row = Delivery.objects.get(campaign=campaign, recipient=person)

    assert row.pk == campaign.pk * 2**32 + person.pk
    assert list(Delivery.objects.of_campaign(campaign.pk)) == [row]
    assert list(Delivery.objects.of_person(person.pk)) == [row]


def test_the_database_refuses_a_row_whose_id_is_not_its_campaign_and_person():
    person = factories.recipient()
    campaign = factories.campaign()

    with pytest.raises(IntegrityError, match="delivery_id_is_campaign_and_person"), transaction.atomic():
        Delivery.objects.create(id=campaign.pk * 2**32 + person.pk + 1, campaign=campaign, recipient=person)
    assert not Delivery.objects.exists()


def test_a_second_row_for_a_person_in_a_campaign_is_refused():
    person = factories.recipient()
    campaign = factories.campaign()
    Delivery.objects.create(campaign=campaign, recipient=person)

    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(campaign=campaign, recipient=person)
    assert Delivery.objects.count() == 1


def test_a_campaign_completes_once_no_row_is_left_and_remembers_where_unfinished_rows_begin():
    people = [factories.recipient() for _ in range(4)]
    campaign = launched(people)
    rows = list(Delivery.objects.of_campaign(campaign.pk).order_by("id"))
    Delivery.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).update(status=Delivery.Status.SENT)

    assert services.campaigns_complete_finished() == []
    campaign.refresh_from_db()
    assert campaign.settled_below == rows[2].pk  # the next check starts there

    Delivery.objects.filter(pk__in=[rows[2].pk, rows[3].pk]).update(status=Delivery.Status.FAILED)
    assert services.campaigns_complete_finished() == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_a_cancel_skips_the_unfinished_rows_only_from_where_they_begin():
    people = [factories.recipient() for _ in range(3)]
    campaign = launched(people)
    rows = list(Delivery.objects.of_campaign(campaign.pk).order_by("id"))
    Delivery.objects.filter(pk=rows[0].pk).update(status=Delivery.Status.SENT)
    services.campaigns_complete_finished()  # the mark moves past the sent row

    services.campaign_cancel(campaign_id=campaign.pk)

    statuses = dict(Delivery.objects.of_campaign(campaign.pk).values_list("pk", "status"))
    assert statuses == {rows[0].pk: "sent", rows[1].pk: "skipped", rows[2].pk: "skipped"}


def test_deleting_a_campaign_deletes_its_rows_and_the_changes_to_them_and_nothing_else():
    people = [factories.recipient() for _ in range(3)]
    gone, kept = launched(people), launched(people)
    change = MessageChange.objects.create(campaign=gone, action=MessageChange.Action.RECALL)
    DeliveryChange.objects.create(change=change, delivery=Delivery.objects.of_campaign(gone.pk).first())

    gone.delete()

    assert not Delivery.objects.filter(campaign_id=gone.pk).exists()
    assert not DeliveryChange.objects.exists()
    assert Delivery.objects.of_campaign(kept.pk).count() == 3


def test_deleting_a_person_deletes_their_rows_in_every_campaign_and_nobody_elses():
    leaver, colleague = factories.recipient(), factories.recipient()
    first, second = launched([leaver, colleague]), launched([leaver, colleague])
    change = MessageChange.objects.create(campaign=first, action=MessageChange.Action.RECALL)
    DeliveryChange.objects.create(change=change, delivery=Delivery.objects.get(campaign=first, recipient=leaver))

    leaver.delete()

    assert not Delivery.objects.filter(recipient_id=leaver.pk).exists()
    assert not DeliveryChange.objects.exists()
    assert sorted(Delivery.objects.values_list("campaign_id", flat=True)) == sorted([first.pk, second.pk])
    assert set(Delivery.objects.values_list("recipient_id", flat=True)) == {colleague.pk}


def test_every_statement_the_engine_runs_on_delivery_rows_can_use_an_index(settings):
    people = [factories.recipient() for _ in range(4)]
    campaign = launched(people)
    other = launched(people)
    rows = list(Delivery.objects.of_campaign(campaign.pk))
    Delivery.objects.filter(pk=rows[0].pk).update(status=Delivery.Status.SENT, activity_id="a", conversation_id="c")
    Delivery.objects.filter(pk=rows[1].pk).update(status=Delivery.Status.FAILED, error_code="BotDisabled")

    with CaptureQueriesContext(connection) as queries:
        feeding.feed()
        services.campaigns_complete_finished()
        recovery.reconcile()
        progress.rebuild(campaign.pk)
        progress.timeline_rebuild(campaign.pk)
        reports.campaign_failure_reasons(campaign_id=campaign.pk)
        reports.campaign_skip_reasons(campaign_id=campaign.pk)
        message_changes.message_reach(campaign_id=campaign.pk)
        list(Delivery.objects.of_person(people[0].pk))
        services.campaign_cancel(campaign_id=other.pk)

    statements = [q["sql"] for q in queries.captured_queries if "delivery_delivery" in q["sql"]]
    assert len(statements) >= 10
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a scan of every row then only where no index serves
        for sql in statements:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0][0]["Plan"]
            assert not list(_every_row_read(plan)), f"{sql}\n{plan}"


def _every_row_read(node):
    """The plan's nodes that read every delivery row: a sequential scan, or an index scan with no
    condition on the index (a walk through the whole of it)."""
    if node.get("Relation Name") == "delivery_delivery" and (
        node["Node Type"] == "Seq Scan" or ("Index" in node["Node Type"] and "Index Cond" not in node)
    ):
        yield node["Node Type"]
    for child in node.get("Plans", []):
        yield from _every_row_read(child)
