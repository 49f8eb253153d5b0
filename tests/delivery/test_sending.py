"""Delivering to one person, against the Teams emulator over real HTTPS."""

import json

import pytest
from django.db import connection

from bots.models import TeamsAddress
from campaigns.models import MessageTemplate, OptOut
from delivery import services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def launched(person, **fields):
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return Delivery.objects.get(campaign=campaign, recipient=person)


def messages_for(teams, person):
    return teams.client.messages(user=str(person.aad_object_id))


def test_it_sends_renders_and_records_activity_and_conversation(teams):
    person = factories.recipient(first_name='Zoë "Z" <b>')
    card = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}
    delivery = launched(person, template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=card, text=""))

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == delivery.status == Delivery.Status.SENT
    assert delivery.activity_id and delivery.conversation_id.startswith("a:")
    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert address.conversation_id == delivery.conversation_id
    [message] = messages_for(teams, person)
    assert message["activity_id"] == delivery.activity_id
    assert message["activity"]["attachments"][0]["content"]["body"][0]["text"] == r'Hi Zoë "Z" \<b>'  # as markdown, escaped


def test_a_second_task_for_the_same_delivery_sends_nothing(teams):
    person = factories.recipient()
    delivery = launched(person)

    first = delivery_send(delivery_id=delivery.pk)
    second = delivery_send(delivery_id=delivery.pk)

    assert (first.status, second.status) == ("sent", "not_claimed")
    assert len(messages_for(teams, person)) == 1


def test_the_stored_conversation_is_reused_for_later_campaigns(teams):
    person = factories.recipient()
    delivery_send(delivery_id=launched(person).pk)
    delivery_send(delivery_id=launched(person).pk)

    assert teams.client.stats()["conversations_created"] == 1
    assert len(messages_for(teams, person)) == 2


def test_it_marks_a_user_who_blocked_the_bot_opted_out(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": "Blocker"}])
    teams.client.block(str(person.aad_object_id))
    delivery = launched(person)

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == "failed"
    assert (delivery.error_code, delivery.last_status_code) == ("ConversationBlockedByUser", 403)
    assert OptOut.objects.get(recipient=person).source == OptOut.Source.BLOCKED
    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).state == TeamsAddress.State.BLOCKED
    # The next campaign skips them without calling Teams.
    later = launched(person)
    assert later.status == Delivery.Status.SKIPPED and later.skip_reason == "opted_out"


def test_it_understands_the_message_writes_blocked_answer_of_an_uninstalled_bot(teams):
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "name": "Leaver"}])
    delivery_send(delivery_id=launched(person).pk)
    teams.client.uninstall(str(person.aad_object_id))
    delivery = launched(person)

    delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "MessageWritesBlocked")
    assert OptOut.objects.filter(recipient=person, source=OptOut.Source.BLOCKED).exists()


def test_it_creates_a_new_conversation_when_the_person_deleted_the_chat(teams):
    person = factories.recipient()
    first = launched(person)
    delivery_send(delivery_id=first.pk)
    teams.client.delete_chat(str(person.aad_object_id))
    second = launched(person)

    assert delivery_send(delivery_id=second.pk).status == "sent"

    first.refresh_from_db()
    second.refresh_from_db()
    assert second.conversation_id != first.conversation_id
    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).conversation_id == second.conversation_id


def test_transient_errors_are_retried_later_and_then_succeed(teams):
    person = factories.recipient()
    delivery = launched(person)
    teams.client.config(faults={"status_503": 1.0})

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == "retrying" and outcome.retry_in > 0
    assert (delivery.status, delivery.last_status_code, delivery.attempts) == ("retrying", 503, 1)
    teams.client.config(faults={})
    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.error_code == ""


def test_a_throttled_send_waits_at_least_retry_after(teams):
    person = factories.recipient()
    delivery = launched(person)
    teams.client.config(faults={"status_429": 1.0, "retry_after_seconds": 3})

    outcome = delivery_send(delivery_id=delivery.pk)

    assert outcome.status == "retrying"
    assert 3.0 <= outcome.retry_in <= 4.0


def test_it_gives_up_after_the_last_attempt(teams, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    delivery = launched(factories.recipient())
    teams.client.config(faults={"status_503": 1.0})

    delivery_send(delivery_id=delivery.pk)
    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == delivery.status == "failed"
    assert delivery.attempts == 2 and delivery.last_status_code == 503


def test_an_app_not_installed_for_the_person_fails_at_once_without_an_opt_out(teams):
    person = factories.recipient()
    teams.client.config(auto_install=False)
    delivery = launched(person)

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == "failed"
    assert (delivery.error_code, delivery.attempts) == ("ForbiddenOperationException", 1)
    assert not OptOut.objects.filter(recipient=person).exists()


def test_an_opt_out_after_launch_is_honoured_at_send_time(teams):
    person = factories.recipient()
    delivery = launched(person)
    OptOut.objects.create(recipient=person, source=OptOut.Source.TYPED_STOP)

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"

    delivery.refresh_from_db()
    assert delivery.skip_reason == "opted_out"
    assert messages_for(teams, person) == []


def test_a_person_who_left_after_launch_is_skipped(teams):
    person = factories.recipient()
    delivery = launched(person)
    person.is_active = False
    person.save()

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"
    delivery.refresh_from_db()
    assert delivery.skip_reason == "inactive"


def test_a_person_deleted_while_their_row_was_written_is_skipped_not_a_crash(teams):
    person = factories.recipient()
    delivery = launched(person)
    with connection.cursor() as cursor:  # the row outlived its person (no foreign key checks on deliveries)
        cursor.execute("DELETE FROM campaigns_recipient WHERE id = %s", [person.pk])

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"
    delivery.refresh_from_db()
    assert delivery.skip_reason == "inactive"
    assert messages_for(teams, person) == []


def test_wrong_bot_credentials_fail_the_delivery_visibly(teams, settings):
    settings.BOT_APP_PASSWORD = "not-the-password"
    delivery = launched(factories.recipient())

    delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.last_status_code) == ("failed", "invalid_client", 401)


def test_the_documented_camel_case_shape_reaches_teams(teams):
    person = factories.recipient()
    delivery_send(delivery_id=launched(person).pk)
    [message] = messages_for(teams, person)
    activity = message["activity"]
    assert activity["type"] == "message" and activity["textFormat"] == "markdown"
    assert activity["text"] == f"Hello {person.first_name}"
    assert json.dumps(activity).find("tenantID") == -1


def test_a_delivery_held_back_by_a_long_retry_after_keeps_its_attempts(teams):
    from bots.pacing import pacer

    person = factories.recipient()
    delivery = launched(person)
    pacer.throttled(tenant_id=person.tenant_id, retry_after=30)

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == "retrying" and 29 <= outcome.retry_in <= 30
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("retrying", 0, "")
    assert messages_for(teams, person) == []


def test_a_worker_that_outlived_its_lease_cannot_overwrite_the_newer_claim(teams):
    from delivery.sending import _finish

    delivery = launched(factories.recipient())
    # The reconciler took the row back and another worker claimed it again (attempt 2).
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=2)

    _finish((delivery.pk, 1), delivery.campaign_id, "failed", error_code="Timeout")  # the stale worker, attempt 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("sending", 2, "")


def test_a_custom_attribute_placeholder_reaches_teams(teams):
    person = factories.recipient(attributes={"floor": "3rd floor lab", "badge": 42})
    template = factories.template(text="Meet us at {{attributes.floor}} (badge {{attributes.badge}})")
    delivery = launched(person, template=template)

    outcome = delivery_send(delivery_id=delivery.pk)

    assert outcome.status == "sent"
    [message] = messages_for(teams, person)
    assert message["activity"]["text"] == "Meet us at 3rd floor lab (badge 42)"


def broken_transport(monkeypatch, error=RuntimeError("boom")):
    from delivery import sending

    def send(**kwargs):
        raise error

    monkeypatch.setattr(sending._transport, "send", send)


def test_a_send_that_raises_inside_the_call_fails_at_once_as_ambiguous_and_the_campaign_completes(
    teams, settings, monkeypatch
):
    from campaigns.models import Campaign

    settings.DELIVERY_MAX_ATTEMPTS = 3
    person = factories.recipient()
    delivery = launched(person)
    broken_transport(monkeypatch)

    outcomes = [delivery_send(delivery_id=delivery.pk).status for _ in range(2)]

    delivery.refresh_from_db()
    assert outcomes == ["failed", "not_claimed"]  # Teams may have the message: never sent again
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("failed", 1, "crier_error")
    assert delivery.error_message.startswith("RuntimeError")
    assert delivery.ambiguous
    assert services.campaigns_complete_finished() == [delivery.campaign_id]
    assert Campaign.objects.get(pk=delivery.campaign_id).status == Campaign.Status.COMPLETED


def test_a_send_that_raises_before_the_call_is_retried_then_fails_with_its_reason(teams, settings, monkeypatch):
    from delivery import sending

    settings.DELIVERY_MAX_ATTEMPTS = 3
    person = factories.recipient()
    delivery = launched(person)

    def render(self, person):
        raise AttributeError("'str' object has no attribute 'get'")

    monkeypatch.setattr(sending.CompiledMessage, "render", render)

    outcomes = [delivery_send(delivery_id=delivery.pk).status for _ in range(4)]

    delivery.refresh_from_db()
    assert outcomes == ["retrying", "retrying", "failed", "not_claimed"]
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("failed", 3, "crier_error")
    assert delivery.error_message.startswith("AttributeError") and not delivery.ambiguous
    assert services.campaigns_complete_finished() == [delivery.campaign_id]


def test_a_campaign_whose_every_send_raises_pauses_itself_with_the_reason(teams, settings, monkeypatch):
    from campaigns.models import Campaign
    from delivery import sending

    settings.DELIVERY_MAX_ATTEMPTS = 1
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    people = [factories.recipient() for _ in range(6)]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    def render(self, person):
        raise AttributeError("boom")

    monkeypatch.setattr(sending.CompiledMessage, "render", render)

    for delivery in Delivery.objects.filter(campaign=campaign).order_by("id"):
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "crier_error" in campaign.status_reason and "AttributeError" in campaign.status_reason
    assert Delivery.objects.filter(campaign=campaign, status="failed").count() < len(people)


def test_a_message_teams_accepted_with_an_unreadable_answer_is_recorded_sent_once(teams, monkeypatch):
    from bots import connector

    person = factories.recipient()
    delivery = launched(person)
    real = connector.http.request

    def gateway_page(method, url, **kwargs):
        response = real(method, url, **kwargs)
        if url.endswith("/activities") and 200 <= response.status < 300:
            return connector.http.HttpResponse(status=response.status, headers=response.headers, body=b"<html>gw</html>")
        return response

    monkeypatch.setattr(connector.http, "request", gateway_page)

    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert delivery_send(delivery_id=delivery.pk).status == "not_claimed"
    assert len(messages_for(teams, person)) == 1


def test_a_crash_before_the_call_to_teams_is_not_ambiguous(teams, settings, monkeypatch):
    from delivery import sending

    settings.DELIVERY_MAX_ATTEMPTS = 1
    person = factories.recipient()
    delivery = launched(person)

    def render(self, person):
        raise KeyError("nope")

    monkeypatch.setattr(sending.CompiledMessage, "render", render)

    assert delivery_send(delivery_id=delivery.pk).status == "failed"

    delivery.refresh_from_db()
    assert (delivery.error_code, delivery.ambiguous) == ("crier_error", False)
    assert delivery.error_message.startswith("KeyError")
    assert messages_for(teams, person) == []


def test_a_message_teams_accepted_is_recorded_sent_even_when_recording_it_raises(teams, monkeypatch):
    from delivery import sending, webhooks
    from delivery.models import WebhookEndpoint, WebhookEvent

    WebhookEndpoint.objects.create(name="hr", url="https://hooks.example/", secret="s", events=["delivery.sent"])
    webhooks.forget_subscriptions()
    person = factories.recipient()
    delivery = launched(person)

    def remember(*args):
        raise RuntimeError("cannot remember")

    monkeypatch.setattr(sending, "_remember_conversation", remember)

    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert delivery_send(delivery_id=delivery.pk).status == "not_claimed"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("sent", "")
    assert delivery.activity_id and delivery.finished_at is not None
    assert len(messages_for(teams, person)) == 1
    assert WebhookEvent.objects.filter(type="delivery.sent").count() == 1
