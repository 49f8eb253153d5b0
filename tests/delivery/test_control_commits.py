"""Pause, resume and cancel through the services with real commits (so their after-commit work runs)
while a send is held inside its call to Teams, on another thread with its own database connection."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from bots.connector import connector
from bots.pacing import stop_key
from bots.transport import TeamsTransport
from delivery import progress, sending, services
from delivery.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 15.0  # seconds: the bound of every wait in this file


class HeldConnector:
    """The real connector, except that the first ``hold`` sends stop inside the call, after the pacer
    let them through and before Teams answers, until ``release``."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.inside = threading.Semaphore(0)
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self._calls = 0

    def prepare(self) -> None:
        connector.prepare()

    def create_conversation(self, **arguments) -> str:
        return connector.create_conversation(**arguments)

    def send(self, **arguments) -> str:
        with self._lock:
            self._calls += 1
            held = self._calls <= self.hold
        if held:
            self.inside.release()
            assert self.gate.wait(WAIT), "the held send was never released"
        return connector.send(**arguments)

    def wait_inside(self, count: int) -> None:
        for _ in range(count):
            assert self.inside.acquire(timeout=WAIT), "no send reached Teams"

    def release(self) -> None:
        self.gate.set()


class Thread(threading.Thread):
    """Runs ``target`` with its own database connection, keeping its result or exception."""

    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self.target, self.result, self.error = target, None, None

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            connection.close()

    def outcome(self):
        self.join(WAIT)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def launched(people: int):
    recipients = [factories.recipient() for _ in range(people)]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign, recipients


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(campaign) -> Counter:
    return Counter(campaign.deliveries.values_list("status", flat=True))


def test_it_returns_from_cancel_only_once_the_send_already_on_its_way_is_recorded(teams):
    campaign, people = launched(3)
    first, *rest = campaign.deliveries.order_by("id")
    held = HeldConnector(hold=1)
    send = Thread(lambda: sending.delivery_send(delivery_id=first.pk, transport=TeamsTransport(client=held)))
    send.start()
    held.wait_inside(1)

    def cancel():
        services.campaign_cancel(campaign_id=campaign.pk)
        return Delivery.objects.get(pk=first.pk).status  # what the row says when cancel answers

    cancelling = Thread(cancel)
    cancelling.start()
    time.sleep(0.5)
    assert cancelling.is_alive(), "cancel answered while a send was still on its way to Teams"
    assert Delivery.objects.get(pk=first.pk).status == Delivery.Status.SENDING
    held.release()

    assert cancelling.outcome() == Delivery.Status.SENT
    assert send.outcome().status == Delivery.Status.SENT
    assert dict(campaign.deliveries.filter(pk__in=[d.pk for d in rest]).values_list("status", "skip_reason")) == {
        "skipped": "campaign_cancelled"
    }
    assert [m["aad_object_id"] for m in teams.client.messages()] == [str(people[0].aad_object_id)]


@pytest.fixture
def worker(settings):
    """A Celery worker inside this process (two threads), taking every queue. Each task closes its
    thread's database connection, as a real worker's Django fixup does, so none outlives the test."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    from settings.celery import app

    def close_connection(**kwargs):
        connection.close()

    task_postrun.connect(close_connection, weak=False)
    try:
        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=20,
                          queues=["direct", "deliveries", "control", "default"]) as running:
            yield running
    finally:
        task_postrun.disconnect(close_connection)


def test_it_lets_the_rest_flow_to_the_end_after_a_pause_and_a_resume(teams, redis_client, worker, monkeypatch):
    held = HeldConnector(hold=2)
    monkeypatch.setattr(sending, "_transport", TeamsTransport(client=held))
    campaign, people = launched(30)
    held.wait_inside(2)  # both worker threads are inside a call to Teams

    services.campaign_pause(campaign_id=campaign.pk)
    assert redis_client.get(stop_key(campaign.pk)) == b"paused"
    held.release()
    # The two calls on their way end sent; every other queued task finds the campaign paused.
    wait_for(lambda: statuses(campaign) == {"sent": 2, "pending": 28}, "the held sends to be recorded")
    time.sleep(0.5)
    assert statuses(campaign) == {"sent": 2, "pending": 28}
    # Failures that paused it, as the error watch counts them.
    redis_client.hset(progress.key(campaign.pk), "systemic", 40)

    services.campaign_resume(campaign_id=campaign.pk)

    assert not redis_client.exists(stop_key(campaign.pk))
    assert redis_client.hget(progress.key(campaign.pk), "systemic") is None
    wait_for(lambda: statuses(campaign) == {"sent": 30}, "every row to be sent after the resume")
    received = Counter(m["aad_object_id"] for m in teams.client.messages())
    assert received == Counter({str(person.aad_object_id): 1 for person in people})
