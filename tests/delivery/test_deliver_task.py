"""The Celery ``deliver`` task: the real task function, run by Celery's ``apply``; a re-queue goes to
the real broker (the test Redis), where it is read back as a worker would find it."""

import base64
import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from delivery import feeding, services, tasks
from delivery.models import Delivery
from delivery.sending import Outcome
from tests import factories

pytestmark = pytest.mark.django_db


def queued(redis_client, queue: str) -> list[dict]:
    """The messages waiting in ``queue``: task name, arguments and ETA."""
    found = []
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        eta = message["headers"].get("eta")
        found.append({"task": message["headers"]["task"], "args": args, "eta": eta and datetime.fromisoformat(eta)})
    return found


def launched(person, **fields) -> Delivery:
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return Delivery.objects.get(campaign=campaign, recipient=person)


def test_it_sends_through_the_service_and_queues_nothing_more(teams, redis_client):
    person = factories.recipient()
    delivery = launched(person)

    result = tasks.deliver.apply((delivery.pk,))

    assert result.get() == "sent"
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1
    assert queued(redis_client, feeding.QUEUE) == queued(redis_client, feeding.DIRECT_QUEUE) == []


@pytest.mark.parametrize("status", ["sent", "failed", "skipped", "not_claimed"])
def test_an_outcome_that_is_final_or_someone_elses_queues_nothing(monkeypatch, redis_client, status):
    monkeypatch.setattr(tasks, "delivery_send", lambda delivery_id: Outcome(status))

    assert tasks.deliver.apply((7,)).get() == status
    assert queued(redis_client, feeding.QUEUE) == []


def test_it_queues_itself_again_after_the_wait_the_service_asks_for(monkeypatch, redis_client):
    asked = []
    monkeypatch.setattr(
        tasks, "delivery_send", lambda delivery_id: asked.append(delivery_id) or Outcome("retrying", retry_in=42.0)
    )
    before = timezone.now()

    assert tasks.deliver.apply((7,)).get() == "retrying"

    after = timezone.now()
    assert asked == [7]
    [again] = queued(redis_client, feeding.QUEUE)
    assert (again["task"], again["args"]) == ("delivery.tasks.deliver", [7])
    assert before + timedelta(seconds=42) <= again["eta"] <= after + timedelta(seconds=42)


def test_a_throttled_send_comes_back_when_teams_retry_after_says(teams, redis_client):
    person = factories.recipient()
    delivery = launched(person)
    teams.client.config(faults={"status_429": 1.0, "retry_after_seconds": 20})
    before = timezone.now()

    assert tasks.deliver.apply((delivery.pk,)).get() == "retrying"

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    [again] = queued(redis_client, feeding.QUEUE)
    assert again["args"] == [delivery.pk]
    assert again["eta"] >= before + timedelta(seconds=20)  # never before Teams' Retry-After
    assert abs((again["eta"] - delivery.next_attempt_at).total_seconds()) < 1  # when the row says it is due


def test_a_direct_message_that_must_wait_comes_back_on_the_direct_queue(monkeypatch, redis_client):
    monkeypatch.setattr(tasks, "delivery_send", lambda delivery_id: Outcome("retrying", retry_in=5.0))

    # As a worker runs the message the feeder put on the direct queue (see feeding.publish).
    tasks.deliver.apply((7,), exchange="", routing_key=feeding.DIRECT_QUEUE).get()

    assert [message["args"] for message in queued(redis_client, feeding.DIRECT_QUEUE)] == [[7]]
    assert queued(redis_client, feeding.QUEUE) == []  # not behind a large campaign's queued messages


def test_a_campaign_message_that_must_wait_comes_back_on_the_deliveries_queue(monkeypatch, redis_client):
    monkeypatch.setattr(tasks, "delivery_send", lambda delivery_id: Outcome("retrying", retry_in=5.0))

    tasks.deliver.apply((7,), exchange="", routing_key=feeding.QUEUE).get()

    assert [message["args"] for message in queued(redis_client, feeding.QUEUE)] == [[7]]
    assert queued(redis_client, feeding.DIRECT_QUEUE) == []
