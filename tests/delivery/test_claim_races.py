"""Claims at the same moment: real threads, each with its own database connection, real commits."""

import threading

import pytest
from django.db import connection

from delivery import services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
WORKERS = 8


def all_at_once(work, count: int) -> list:
    """Runs ``work()`` in ``count`` threads released together; returns what each returned (or raised)."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            results[index] = work()
        except BaseException as error:  # noqa: BLE001 - reported by the assertions below
            results[index] = error
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    return results


def test_it_sends_once_when_eight_workers_claim_the_same_delivery_at_once(teams):
    person = factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)

    outcomes = all_at_once(lambda: delivery_send(delivery_id=delivery.pk), WORKERS)

    statuses = sorted(getattr(outcome, "status", repr(outcome)) for outcome in outcomes)
    assert statuses == ["not_claimed"] * (WORKERS - 1) + ["sent"]
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1  # one call reached Teams
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 1)


def test_of_many_deliveries_claimed_by_eight_workers_at_once_each_is_sent_exactly_once(teams):
    people = [factories.recipient() for _ in range(6)]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    ids = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))

    def every_row():  # each worker goes through every row, as duplicate tasks would
        return [delivery_send(delivery_id=delivery_id).status for delivery_id in ids]

    outcomes = all_at_once(every_row, WORKERS)

    assert not [outcome for outcome in outcomes if isinstance(outcome, BaseException)], outcomes
    for index in range(len(ids)):
        assert sorted(outcome[index] for outcome in outcomes) == ["not_claimed"] * (WORKERS - 1) + ["sent"]
    for person in people:
        assert len(teams.client.messages(user=str(person.aad_object_id))) == 1
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", "attempts")) == {("sent", 1)}
