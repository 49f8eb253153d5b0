"""What one send leaves behind, exactly: the row, the counters, the address and the webhook event,
for every way a send can end (a transport that records its calls stands in for Teams)."""

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from bots.models import TeamsAddress
from core.channels import Address, SendResult, TransportError
from delivery import progress, services, webhooks
from delivery.models import Delivery, WebhookEndpoint, WebhookEvent
from delivery.sending import Outcome, delivery_send
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
    from bots.pacing import pacer

    person = factories.recipient()
    delivery = launched(person)
    pacer.stop(campaign_id=delivery.campaign_id, reason="cancelled")

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"

    delivery = row(delivery)
    assert (delivery.status, delivery.skip_reason, delivery.attempts) == ("skipped", "campaign_cancelled", 1)
    assert counters(delivery.campaign_id) == {"skipped": 1}


def test_it_hands_a_delivery_back_untouched_when_a_pause_is_seen_after_its_claim(teams):
    from bots.pacing import pacer

    person = factories.recipient()
    delivery = launched(person)
    pacer.stop(campaign_id=delivery.campaign_id, reason="paused")

    assert delivery_send(delivery_id=delivery.pk) == Outcome("pending")

    delivery = row(delivery)
    assert (delivery.status, delivery.attempts, delivery.finished_at) == ("pending", 0, None)
    assert counters(delivery.campaign_id) == {}
    assert teams.client.messages(user=str(person.aad_object_id)) == []


def test_it_schedules_a_deferred_delivery_for_when_the_wait_is_over(teams):
    from bots.pacing import pacer

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


# The address a send goes to.


def test_it_addresses_a_person_never_reached_before_by_their_entra_id_tenant_and_the_default_service(
    settings, caplog
):
    settings.TEAMS_SERVICE_URL = "https://smba.example/teams/"
    person = factories.recipient(tenant_id="22222222-2222-2222-2222-222222222222")
    delivery = launched(person)
    Delivery.objects.filter(pk=delivery.pk).update(  # as an earlier attempt left it
        status="retrying", error_code="ServiceUnavailable", error_message="busy", last_status_code=503
    )
    transport = RecordingTransport(SendResult(activity_id="act-3", conversation_id="a:new"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport) == Outcome("sent")

    [call] = transport.calls
    assert call.address == Address(
        member_id=str(person.aad_object_id),
        tenant_id="22222222-2222-2222-2222-222222222222",
        service_url="https://smba.example/teams/",
        conversation_id="",
    )
    assert call.campaign_id == delivery.campaign_id
    assert call.activity["text"] == f"Hello {person.first_name}"
    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert (address.tenant_id, address.user_id, address.conversation_id, address.service_url, address.state) == (
        "22222222-2222-2222-2222-222222222222", "", "a:new", "https://smba.example/teams/", "unknown"
    )
    delivery = row(delivery)
    assert (delivery.status, delivery.activity_id, delivery.conversation_id, delivery.last_status_code) == (
        "sent", "act-3", "a:new", 201
    )
    assert (delivery.attempts, delivery.error_code, delivery.error_message, delivery.ambiguous) == (1, "", "", False)
    assert delivery.finished_at is not None
    assert counters(delivery.campaign_id) == {"sent": 1}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # a plain success


def test_it_renders_the_template_as_last_edited():
    template = factories.template(text="Hello {{first_name}}")
    first, second = factories.recipient(), factories.recipient()
    transport = RecordingTransport(SendResult("act-10", "a:c"))
    delivery_send(delivery_id=launched(first, template=template).pk, transport=transport)
    template.text = "Good morning {{first_name}}"
    template.save()

    delivery_send(delivery_id=launched(second, template=template).pk, transport=transport)

    assert [call.activity["text"] for call in transport.calls] == [
        f"Hello {first.first_name}", f"Good morning {second.first_name}"
    ]


def test_it_addresses_a_known_person_through_their_stored_chat_and_leaves_it_untouched():
    person = factories.recipient()
    stored = TeamsAddress.objects.create(
        aad_object_id=person.aad_object_id, tenant_id="33333333-3333-3333-3333-333333333333", user_id="29:abc",
        service_url="https://smba.stored/emea/", conversation_id="a:stored", state="installed",
    )
    delivery = launched(person)
    transport = RecordingTransport(SendResult(activity_id="act-4", conversation_id="a:stored"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "sent"

    [call] = transport.calls
    assert call.address == Address(
        member_id="29:abc",
        tenant_id="33333333-3333-3333-3333-333333333333",
        service_url="https://smba.stored/emea/",
        conversation_id="a:stored",
    )
    after = TeamsAddress.objects.get(pk=stored.pk)
    assert (after.conversation_id, after.updated_at) == ("a:stored", stored.updated_at)


def test_it_moves_a_known_person_to_the_new_chat_teams_made_and_keeps_the_rest_of_their_address():
    person = factories.recipient()
    TeamsAddress.objects.create(
        aad_object_id=person.aad_object_id, tenant_id="33333333-3333-3333-3333-333333333333", user_id="29:abc",
        service_url="https://smba.stored/emea/", conversation_id="a:deleted", state="installed",
    )
    delivery = launched(person)

    delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(SendResult("act-5", "a:remade")))

    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert (address.tenant_id, address.user_id, address.conversation_id, address.service_url, address.state) == (
        "33333333-3333-3333-3333-333333333333", "29:abc", "a:remade", "https://smba.stored/emea/", "installed"
    )
    assert row(delivery).conversation_id == "a:remade"


def test_it_fills_the_missing_tenant_and_service_of_a_stored_address_when_the_chat_changes(settings):
    settings.TEAMS_SERVICE_URL = "https://smba.example/teams/"
    person = factories.recipient()
    TeamsAddress.objects.create(aad_object_id=person.aad_object_id, user_id="29:abc", conversation_id="a:old")
    delivery = launched(person)

    delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(SendResult("act-6", "a:remade")))

    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert (address.tenant_id, address.service_url, address.conversation_id) == (
        factories.TENANT, "https://smba.example/teams/", "a:remade"
    )


def test_it_falls_back_to_the_bots_tenant_for_a_person_without_one(settings):
    settings.BOT_TENANT_ID = "44444444-4444-4444-4444-444444444444"
    delivery = launched(factories.recipient(tenant_id=""))
    transport = RecordingTransport(SendResult("act-7", "a:c"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport).status == "sent"

    assert transport.calls[0].address.tenant_id == "44444444-4444-4444-4444-444444444444"


def test_it_fails_a_person_without_any_tenant_without_calling_teams(settings):
    settings.BOT_TENANT_ID = ""
    delivery = launched(factories.recipient(tenant_id=""))
    transport = RecordingTransport(SendResult("act-8", "a:c"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport) == Outcome("failed")

    delivery = row(delivery)
    assert (delivery.status, delivery.error_code, delivery.error_message) == (
        "failed", "NoTenant", "No tenant id for this person: set the recipient's tenant_id or BOT_TENANT_ID."
    )
    assert delivery.finished_at is not None
    assert counters(delivery.campaign_id) == {"failed": 1}
    assert transport.calls == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [("inactive", "inactive"), ("deleted", "inactive"), ("opted_out", "opted_out"), ("no_identity", "no_teams_identity")],
)
def test_it_skips_a_person_it_must_not_message_without_calling_teams(change, reason):
    from campaigns.models import OptOut

    person = factories.recipient()
    delivery = launched(person)
    if change == "inactive":
        person.is_active = False
        person.save()
    elif change == "deleted":  # while the campaign's rows were written (deliveries have no foreign key checks)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM campaigns_recipient WHERE id = %s", [person.pk])
    elif change == "opted_out":
        OptOut.objects.create(recipient=person, source=OptOut.Source.TYPED_STOP)
    else:
        person.aad_object_id = None
        person.save()
    transport = RecordingTransport(SendResult("act-9", "a:c"))

    assert delivery_send(delivery_id=delivery.pk, transport=transport) == Outcome("skipped")

    delivery = row(delivery)
    assert (delivery.status, delivery.skip_reason, delivery.attempts) == ("skipped", reason, 1)
    assert delivery.finished_at is not None
    assert counters(delivery.campaign_id) == {"skipped": 1}
    assert transport.calls == []


# What Teams' refusals leave behind.


def test_it_records_a_permanent_refusal_with_its_code_and_message_cut_to_their_columns():
    delivery = launched(factories.recipient())
    refusal = TransportError(status=400, code="C" * 150, message="m" * 1500, permanent=True)

    assert delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(refusal)) == Outcome("failed")

    delivery = row(delivery)
    assert (delivery.status, delivery.last_status_code, delivery.attempts) == ("failed", 400, 1)
    assert (delivery.error_code, delivery.error_message) == ("C" * 100, "m" * 1000)
    assert delivery.finished_at is not None and delivery.activity_id == ""
    assert counters(delivery.campaign_id) == {"failed": 1, "systemic": 1}


def test_it_schedules_a_transient_refusal_for_retry_after_teams_wait(settings):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    delivery = launched(factories.recipient())
    refusal = TransportError(status=429, code="TooManyRequests", message="slow down", permanent=False, retry_after=10)
    before = timezone.now()

    outcome = delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(refusal))

    delivery = row(delivery)
    assert outcome.status == "retrying" and 10 <= outcome.retry_in <= 11
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("retrying", 1, 429)
    assert (delivery.error_code, delivery.error_message, delivery.finished_at) == ("TooManyRequests", "slow down", None)
    assert before + timedelta(seconds=outcome.retry_in) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=outcome.retry_in)
    assert counters(delivery.campaign_id) == {}


def test_it_fails_the_last_attempt_of_a_transient_refusal(settings):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    delivery = launched(factories.recipient())
    refusal = TransportError(status=503, code="ServiceUnavailable", message="busy", permanent=False, retry_after=10)

    assert delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(refusal)) == Outcome("failed")

    delivery = row(delivery)
    assert (delivery.status, delivery.error_code, delivery.last_status_code) == ("failed", "ServiceUnavailable", 503)


def test_it_remembers_the_chat_a_refusal_names_and_records_a_block_as_an_opt_out():
    from campaigns.models import OptOut

    person = factories.recipient()
    delivery = launched(person)
    refusal = TransportError(
        status=403, code="ConversationBlockedByUser", message="blocked", permanent=True, opt_out=True, personal=True,
        conversation_id="a:blocked",
    )

    assert delivery_send(delivery_id=delivery.pk, transport=RecordingTransport(refusal)) == Outcome("failed")

    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert (address.conversation_id, address.state) == ("a:blocked", "blocked")
    opt_out = OptOut.objects.get(recipient=person)
    assert (opt_out.source, opt_out.category, opt_out.note) == ("blocked", None, "Teams answered ConversationBlockedByUser")
    assert counters(delivery.campaign_id) == {"failed": 1}


def test_it_leaves_the_address_alone_when_a_refusal_names_no_chat():
    person, stranger = factories.recipient(), factories.recipient()
    TeamsAddress.objects.create(aad_object_id=person.aad_object_id, user_id="29:abc", conversation_id="a:stored")
    refusal = TransportError(status=404, code="NotFound", message="gone", permanent=True)

    for someone in (person, stranger):
        delivery_send(delivery_id=launched(someone).pk, transport=RecordingTransport(refusal))

    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).conversation_id == "a:stored"
    assert not TeamsAddress.objects.filter(aad_object_id=stranger.aad_object_id).exists()


# A write that outlives a database restart.


class FlakyConnection:
    """The database connection, unavailable for the first ``failures`` cursors."""

    def __init__(self, real, failures):
        self.real, self.failures, self.closed = real, failures, 0

    def cursor(self):
        from django.db import OperationalError

        if self.failures:
            self.failures -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return self.real.cursor()

    def close(self):
        self.closed += 1


def test_it_retries_an_outcome_write_every_second_while_the_database_is_away(settings, monkeypatch):
    from django.db import connection

    from delivery import sending

    settings.DELIVERY_DB_RETRY_SECONDS = 30
    delivery = launched(factories.recipient())
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=1)
    flaky = FlakyConnection(connection, failures=2)
    sleeps = []
    monkeypatch.setattr(sending, "connection", flaky)
    monkeypatch.setattr(sending, "time", SimpleNamespace(monotonic=sending.time.monotonic, sleep=sleeps.append))

    written = sending._write(f"UPDATE delivery_delivery SET error_code = 'x' WHERE {sending.CLAIMED}", [delivery.pk, 1])

    assert (written, sleeps, flaky.closed) == (1, [1.0, 1.0], 2)
    assert row(delivery).error_code == "x"


def test_it_gives_up_an_outcome_write_once_the_database_stayed_away_too_long(settings, monkeypatch):
    from django.db import OperationalError, connection

    from delivery import sending

    settings.DELIVERY_DB_RETRY_SECONDS = 30
    clock = iter([1000.0, 1030.0, 1030.5])  # still retried at the deadline, not after it
    flaky = FlakyConnection(connection, failures=5)
    sleeps = []
    monkeypatch.setattr(sending, "connection", flaky)
    monkeypatch.setattr(sending, "time", SimpleNamespace(monotonic=lambda: next(clock), sleep=sleeps.append))

    with pytest.raises(OperationalError):
        sending._write("SELECT 1", [])

    assert (sleeps, flaky.failures) == ([1.0], 3)
