import datetime
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Audience, Campaign, OptOut
from core.errors import ApplicationError
from delivery import services
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db


def statuses(campaign):
    return dict(campaign.deliveries.values_list("recipient__external_id", "status"))


def test_launch_creates_one_delivery_per_selected_active_person():
    people = [factories.recipient() for _ in range(5)]
    factories.recipient(is_active=False)
    campaign = factories.campaign()

    services.campaign_launch(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.launched_at is not None
    assert sorted(statuses(campaign)) == sorted(p.external_id for p in people)
    assert set(statuses(campaign).values()) == {Delivery.Status.PENDING}


def test_launch_marks_opted_out_and_unreachable_people_skipped_at_once():
    reachable = factories.recipient()
    stopped = factories.recipient()
    no_identity = factories.recipient(aad_object_id=None)
    campaign = factories.campaign()
    OptOut.objects.create(recipient=stopped, source=OptOut.Source.TYPED_STOP)

    services.campaign_launch(campaign_id=campaign.pk)

    rows = {d.recipient_id: d for d in campaign.deliveries.all()}
    assert rows[reachable.pk].status == Delivery.Status.PENDING
    assert (rows[stopped.pk].status, rows[stopped.pk].skip_reason) == ("skipped", "opted_out")
    assert (rows[no_identity.pk].status, rows[no_identity.pk].skip_reason) == ("skipped", "no_teams_identity")


def test_mandatory_category_reaches_people_who_opted_out_but_not_those_who_blocked():
    opted_out = factories.recipient()
    blocked = factories.recipient()
    OptOut.objects.create(recipient=opted_out, source=OptOut.Source.TYPED_STOP)
    OptOut.objects.create(recipient=blocked, source=OptOut.Source.BLOCKED)
    campaign = factories.campaign(category=factories.category(mandatory=True))

    services.campaign_launch(campaign_id=campaign.pk)

    rows = {d.recipient_id: d.status for d in campaign.deliveries.all()}
    assert rows == {opted_out.pk: "pending", blocked.pk: "skipped"}


def test_rules_audience_selects_by_attributes_and_honours_exclusions():
    paris = factories.recipient(department="Sales", country="FR", attributes={"site": "paris"})
    berlin = factories.recipient(department="Sales", country="DE", attributes={"site": "berlin"})
    factories.recipient(department="Legal", country="FR")
    excluded = factories.recipient(department="Sales", country="DE")
    audience = factories.audience(
        kind=Audience.Kind.RULES,
        rules=[{"field": "department", "op": "eq", "value": "Sales"}, {"field": "country", "op": "in", "value": ["fr", "DE"]}],
    )
    audience.excluded.add(excluded)
    campaign = factories.campaign(audience=audience)

    services.campaign_launch(campaign_id=campaign.pk)

    assert set(campaign.deliveries.values_list("recipient_id", flat=True)) == {paris.pk, berlin.pk}


def test_static_audience_selects_its_members_only():
    members = [factories.recipient(), factories.recipient()]
    factories.recipient()
    audience = factories.audience(kind=Audience.Kind.STATIC)
    audience.members.add(*members)
    campaign = factories.campaign(audience=audience)

    services.campaign_launch(campaign_id=campaign.pk)

    assert set(campaign.deliveries.values_list("recipient_id", flat=True)) == {m.pk for m in members}


def test_launching_a_running_campaign_is_refused():
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    with pytest.raises(ApplicationError) as error:
        services.campaign_launch(campaign_id=campaign.pk)
    assert error.value.status == 409


def test_scheduling_in_the_past_is_refused_with_the_field_named():
    campaign = factories.campaign()
    with pytest.raises(ApplicationError) as error:
        services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() - datetime.timedelta(minutes=1))
    assert "send_at" in error.value.fields


def test_due_scheduled_campaigns_launch_and_future_ones_wait():
    factories.recipient()
    due = factories.campaign()
    later = factories.campaign()
    services.campaign_schedule(campaign_id=due.pk, send_at=timezone.now() + datetime.timedelta(seconds=30))
    services.campaign_schedule(campaign_id=later.pk, send_at=timezone.now() + datetime.timedelta(hours=1))
    Campaign.objects.filter(pk=due.pk).update(send_at=timezone.now() - datetime.timedelta(seconds=1))

    launched = services.launch_due_campaigns()

    assert launched == [due.pk]
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.status, later.status) == ("running", "scheduled")
    assert due.deliveries.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_launch_a_campaign_once():
    for _ in range(3):
        factories.recipient()
    campaign = factories.campaign()
    services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(seconds=30))
    Campaign.objects.filter(pk=campaign.pk).update(send_at=timezone.now())
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def scheduler():
        barrier.wait()
        try:
            results.append(services.launch_due_campaigns())
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(len(r) for r in results) == [0, 1]
    assert Delivery.objects.filter(campaign=campaign).count() == 3


def test_cancel_skips_everyone_not_yet_sent_and_keeps_what_was_sent():
    first, second = factories.recipient(), factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    Delivery.objects.filter(campaign=campaign, recipient=first).update(status=Delivery.Status.SENT)

    services.campaign_cancel(campaign_id=campaign.pk)

    rows = {d.recipient_id: (d.status, d.skip_reason) for d in campaign.deliveries.all()}
    assert rows == {first.pk: ("sent", ""), second.pk: ("skipped", "campaign_cancelled")}
    with pytest.raises(ApplicationError):
        services.campaign_cancel(campaign_id=campaign.pk)


def test_campaign_completes_when_every_delivery_has_ended():
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    assert services.campaigns_complete_finished() == []

    campaign.deliveries.update(status=Delivery.Status.FAILED)

    assert services.campaigns_complete_finished() == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_people_added_between_the_count_and_the_first_rows_void_the_approval_and_launch_nothing(settings):
    from unittest import mock

    from campaigns import approvals
    from campaigns.approvals import approval_fingerprint
    from core.errors import ApplicationError

    settings.APPROVAL_THRESHOLD = 2
    for _ in range(5):
        factories.recipient()
    campaign = factories.campaign()
    Campaign.objects.filter(pk=campaign.pk).update(
        approved_at=timezone.now(), approved_people=3, approved_fingerprint=approval_fingerprint(campaign=campaign)
    )

    # The audience is counted (3, as approved) before two people are added and the rows written.
    with mock.patch.object(approvals, "audience_count", return_value=3), pytest.raises(ApplicationError) as refused:
        services.campaign_launch(campaign_id=campaign.pk)

    assert refused.value.code == "approval_required"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_at is None
    assert "approved for 3 people and now reaches 5" in campaign.status_reason
    assert not Delivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_launch_waits_for_an_edit_of_its_template_under_way_so_no_unapproved_text_is_sent():
    from campaigns.approvals import template_edit_require
    from campaigns.models import MessageTemplate

    factories.recipient()
    campaign = factories.campaign()
    checked = threading.Event()

    def edit():
        try:
            with transaction.atomic():
                template_edit_require(template_id=campaign.template_id)  # nothing sends it yet: allowed
                checked.set()
                time.sleep(0.5)  # a launch comes in meanwhile
                template = MessageTemplate.objects.get(pk=campaign.template_id)
                template.text = "New words"
                template.save()
        finally:
            checked.set()
            connection.close()

    editor = threading.Thread(target=edit)
    editor.start()
    checked.wait()
    services.campaign_launch(campaign_id=campaign.pk)
    editor.join()

    campaign.refresh_from_db()
    template = MessageTemplate.objects.get(pk=campaign.template_id)
    assert template.text == "New words"
    assert template.updated_at <= campaign.launched_at  # the launch sent the text as it was when it began


def test_counters_left_in_redis_for_the_same_campaign_id_by_an_earlier_database_count_for_nothing(redis_client):
    from delivery import progress

    factories.recipient()
    factories.recipient(aad_object_id=None)  # skipped at the launch
    campaign = factories.campaign()
    # a database made afresh while Redis kept running: this campaign's id once was another campaign's
    progress.record(campaign.pk, sent=402, failed=2, start=True)

    services.campaign_launch(campaign_id=campaign.pk)
    campaign.refresh_from_db()

    counts = progress.read(campaign)
    assert (counts["sent"], counts["failed"], counts["skipped"], counts["remaining"]) == (0, 0, 1, 1)
    assert all(point["sent"] == 0 for point in progress.timeline(campaign.pk))  # 402 before



def test_a_feeder_cursor_left_in_redis_for_the_campaign_id_by_an_earlier_database_feeds_nothing_wrong(redis_client):
    from delivery import feeding

    person = factories.recipient()
    campaign = factories.campaign()
    feeding.broker().set(feeding.cursor_key(campaign.pk), 10 ** 15)  # another database's campaign, fed far

    services.campaign_launch(campaign_id=campaign.pk)

    assert feeding.broker().get(feeding.cursor_key(campaign.pk)) is None
    assert Delivery.objects.filter(campaign=campaign, recipient=person).exists()
