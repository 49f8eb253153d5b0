"""Webhook dispatchers at the same moment, and more events than one call holds: real threads, each
with its own database connection, real commits, and a real HTTP receiver on 127.0.0.1."""

import threading
import time

import pytest
from django.db import connection

from delivery import webhooks
from delivery.models import WebhookAttempt, WebhookEndpoint, WebhookEvent
from tests.delivery.test_webhooks import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
EVENT = "opt_out.created"


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK_TARGETS = True  # the receiver listens on 127.0.0.1
    running = Receiver(delay=0.05)
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def endpoint(receiver) -> WebhookEndpoint:
    subscribed = WebhookEndpoint.objects.create(name="hr", url=receiver.url, secret="whsec_test", events=[EVENT])
    webhooks.forget_subscriptions()
    yield subscribed
    webhooks.forget_subscriptions()


def written(count: int) -> list[int]:
    """``count`` events, each committed on its own, as opt-outs write them; their ids in order."""
    for number in range(count):
        webhooks.event_record(type=EVENT, payload={"number": number})
    return list(WebhookEvent.objects.order_by("id").values_list("id", flat=True))


def drained(count: int, ticks: int = 10) -> list[int]:
    """Ticks until ``count`` more events are delivered (at most ``ticks`` ticks): an event waits while a
    transaction that may be older is still running, and this server runs other tests' too."""
    delivered = []
    while sum(delivered) < count and len(delivered) < ticks:
        delivered.append(webhooks.dispatch())
    return delivered


def together(*works, names=None) -> list:
    """Runs each of ``works`` in its own thread, released at the same moment; returns their results."""
    start = threading.Barrier(len(works))
    results: list = [None] * len(works)

    def run(index, work):
        try:
            start.wait(timeout=10)
            results[index] = work()
        except BaseException as error:  # noqa: BLE001 - reported by the assertions
            results[index] = error
        finally:
            connection.close()  # this thread's own connection

    threads = [
        threading.Thread(target=run, args=(index, work), name=(names or {}).get(index, f"work-{index}"))
        for index, work in enumerate(works)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    assert not [result for result in results if isinstance(result, BaseException)], results
    return results


def test_two_dispatchers_at_once_deliver_each_event_once_and_in_order(settings, receiver, endpoint):
    settings.WEBHOOK_BATCH = 5
    ids = written(23)

    delivered = together(webhooks.dispatch, webhooks.dispatch)
    later = drained(23 - sum(delivered))

    assert [event["id"] for event in receiver.events()] == ids  # each once, in order
    assert sum(delivered) + sum(later) == 23
    endpoint.refresh_from_db()
    assert endpoint.cursor == ids[-1]
    assert WebhookAttempt.objects.filter(ok=True).count() == len(receiver.calls)


def test_a_dispatcher_that_got_the_lock_after_another_tick_sends_from_where_that_tick_left_off(
    settings, receiver, endpoint, monkeypatch
):
    settings.WEBHOOK_BATCH = 5
    ids = written(12)
    first_done = threading.Event()
    acquire = webhooks.lock_acquire

    def late_acquire(*args, **kwargs):  # the late dispatcher read the endpoints, then waited
        if threading.current_thread().name == "late":
            assert first_done.wait(timeout=30)
        return acquire(*args, **kwargs)

    monkeypatch.setattr(webhooks, "lock_acquire", late_acquire)

    def first():
        try:
            return webhooks.dispatch()
        finally:
            first_done.set()

    delivered = together(first, webhooks.dispatch, names={1: "late"})
    later = drained(12 - sum(delivered))

    assert [event["id"] for event in receiver.events()] == ids
    assert sum(delivered) + sum(later) == 12


def test_more_events_than_one_call_holds_go_once_each_in_order_over_several_calls_and_ticks(
    settings, receiver, endpoint
):
    settings.WEBHOOK_BATCH = 5
    settings.WEBHOOK_MAX_BATCHES_PER_TICK = 2
    ids = written(23)

    ticks = drained(23)

    assert [event["id"] for event in receiver.events()] == ids  # each once, in order
    assert max(len(batch) for batch in receiver.batches()) == 5  # a call holds one batch
    assert max(ticks) == 10  # a tick sends at most its two batches; the next tick goes on
    assert webhooks.dispatch() == 0
    endpoint.refresh_from_db()
    assert (endpoint.cursor, endpoint.failures) == (ids[-1], 0)


def test_two_dispatchers_ticking_while_events_are_written_deliver_each_once_in_order(settings, receiver, endpoint):
    settings.WEBHOOK_BATCH = 4
    writing = threading.Event()
    writing.set()

    def writer():
        try:
            for number in range(30):
                webhooks.event_record(type=EVENT, payload={"number": number})
                time.sleep(0.01)
        finally:
            writing.clear()

    def dispatcher():
        sent = 0
        while writing.is_set():
            sent += webhooks.dispatch()
            time.sleep(0.01)
        return sent + webhooks.dispatch()  # a last tick for what was written during the previous one

    delivered = together(writer, dispatcher, dispatcher)
    later = drained(30 - delivered[1] - delivered[2])  # what both last ticks left (each may have found the other busy)

    ids = list(WebhookEvent.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 30
    assert [event["id"] for event in receiver.events()] == ids
    assert delivered[1] + delivered[2] + sum(later) == 30
