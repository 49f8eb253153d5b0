"""What one send leaves behind, exactly: the row, the counters, the address and the webhook event,
for every way a send can end (a transport that records its calls stands in for Teams)."""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from delivery import progress, services, webhooks
from delivery.models import Delivery, WebhookEndpoint, WebhookEvent
from delivery.sending import delivery_send
from delivery.transport import SendResult, TransportError
from tests import factories

pytestmark = pytest.mark.django_db


class RecordingTransport:
    """Answers every send with ``answer`` (a SendResult, or an exception to raise) and keeps the calls."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def send(self, *, address, activity_json, campaign_id=None):
        self.calls.append(SimpleNamespace(address=address, activity=json.loads(activity_json), campaign_id=campaign_id))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def launched(person, **fields):
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return Delivery.objects.get(campaign=campaign, recipient=person)


def counters(campaign_id):
    """The campaign's progress counters in Redis, as numbers (without the "built" mark)."""
    raw = progress.client().hgetall(progress.key(campaign_id))
    return {name.decode(): int(value) for name, value in raw.items() if name != b"built"}


def row(delivery):
    delivery.refresh_from_db()
    return delivery


def raising_render(monkeypatch, error):
    from delivery import sending

    def render(self, person):
        raise error

    monkeypatch.setattr(sending.CompiledMessage, "render", render)


# The crash reason shown on the watch page.


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ValueError("bad value"), "ValueError: bad value"),
        (ValueError("first line\nsecond line"), "ValueError: first line"),
        (ValueError("x" * 400 + "\nmore"), "ValueError: " + "x" * 300),
        (RuntimeError(), "RuntimeError"),
    ],
    ids=["one-line", "first-line-only", "cut-at-300", "no-text"],
)
def test_it_records_a_crash_as_its_class_and_the_start_of_its_first_line(settings, monkeypatch, error, reason):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    delivery = launched(factories.recipient())
    raising_render(monkeypatch, error)

    assert delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(AssertionError())).status == "failed"

    delivery = row(delivery)
    assert (delivery.status, delivery.error_code, delivery.error_message) == ("failed", "crier_error", reason)
    assert (delivery.last_status_code, delivery.ambiguous) == (None, False)


def test_it_explains_a_crash_without_an_exception_as_an_unknown_error():
    from delivery.sending import _crash_reason

    assert _crash_reason(None) == "Unknown error"


def test_it_counts_a_send_that_raised_inside_the_call_once_as_ambiguous_and_failed(settings):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    delivery = launched(factories.recipient())
    transport = RecordingTransport(ConnectionResetError("reset by peer"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "failed"

    delivery = row(delivery)
    assert (delivery.status, delivery.ambiguous, delivery.attempts) == ("failed", True, 1)
    assert delivery.error_message == "ConnectionResetError: reset by peer"
    assert counters(delivery.campaign_id) == {"ambiguous": 1, "failed": 1, "systemic": 1}
    assert len(transport.calls) == 1


# A message Teams accepted is recorded sent, whatever raises while recording it.


def test_it_records_a_message_accepted_despite_a_failing_first_record_with_its_event_and_counters(monkeypatch):
    from delivery import sending

    WebhookEndpoint.objects.create(name="hr", url="https://hooks.example/", secret="s", events=["delivery.sent"])
    webhooks.forget_subscriptions()
    delivery = launched(factories.recipient())

    def remember(*args):
        raise RuntimeError("cannot remember")

    monkeypatch.setattr(sending, "_remember_conversation", remember)
    transport = RecordingTransport(SendResult(activity_id="act-1", conversation_id="a:conv-1"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "sent"

    delivery = row(delivery)
    assert (delivery.status, delivery.activity_id, delivery.conversation_id) == ("sent", "act-1", "a:conv-1")
    assert (delivery.last_status_code, delivery.error_code, delivery.error_message) == (201, "", "")
    assert delivery.finished_at is not None
    assert counters(delivery.campaign_id) == {"sent": 1}
    [event] = WebhookEvent.objects.filter(type="delivery.sent")
    assert (event.payload["delivery"], event.payload["activity_id"]) == (delivery.pk, "act-1")


def test_it_records_a_message_accepted_while_webhook_subscriptions_are_unreadable_plainly(monkeypatch):
    delivery = launched(factories.recipient())
    Delivery.objects.filter(pk=delivery.pk).update(error_code="Timeout", error_message="an earlier attempt timed out")

    def unreadable():
        raise RuntimeError("subscriptions unreadable")

    monkeypatch.setattr(webhooks, "wanted_types", unreadable)
    transport = RecordingTransport(SendResult(activity_id="act-2", conversation_id="a:conv-2"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "sent"
    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "not_claimed"

    delivery = row(delivery)
    assert (delivery.status, delivery.activity_id, delivery.conversation_id) == ("sent", "act-2", "a:conv-2")
    assert (delivery.last_status_code, delivery.error_code, delivery.error_message) == (201, "", "")
    assert (delivery.attempts, delivery.ambiguous) == (1, False)
    assert delivery.finished_at is not None
    assert counters(delivery.campaign_id) == {"sent": 1}
    assert not WebhookEvent.objects.exists()
    assert len(transport.calls) == 1


# Stopped and deferred sends.


def test_it_counts_a_delivery_skipped_by_a_cancel_seen_after_its_claim(teams):
    from delivery.pacing import pacer

    person = factories.recipient()
    delivery = launched(person)
    pacer.stop(campaign_id=delivery.campaign_id, reason="cancelled")

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"

    delivery = row(delivery)
    assert (delivery.status, delivery.skip_reason, delivery.attempts) == ("skipped", "campaign_cancelled", 1)
    assert counters(delivery.campaign_id) == {"skipped": 1}


def test_it_schedules_a_deferred_delivery_for_when_the_wait_is_over(teams):
    from delivery.pacing import pacer

    person = factories.recipient()
    delivery = launched(person)
    pacer.throttled(tenant_id=person.tenant_id, retry_after=30)
    before = timezone.now()

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery = row(delivery)
    assert (delivery.status, delivery.attempts) == ("retrying", 0)
    assert before + timedelta(seconds=outcome.retry_in) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=outcome.retry_in)
    assert counters(delivery.campaign_id) == {}
