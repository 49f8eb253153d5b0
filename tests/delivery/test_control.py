"""Pause, resume, cancel, a campaign pausing itself, and progress: against the emulator and Redis."""

import base64
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from bots.connector import ConnectorError
from bots.pacing import pacer, stop_key
from bots.transport import classify
from campaigns.models import AuditEntry, Campaign
from core.channels import TransportError
from core.errors import ApplicationError
from delivery import control, feeding, progress, services, webhooks
from delivery.control import campaign_watch_errors
from delivery.models import Delivery, WebhookEndpoint, WebhookEvent
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def launched(people=1, **fields):
    recipients = [factories.recipient() for _ in range(people)]
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign, recipients


def test_a_paused_campaign_claims_nothing_and_resumes_where_it_stopped(teams, redis_client):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()

    services.campaign_pause(campaign_id=campaign.pk)
    assert delivery_send(delivery_id=delivery.pk).status == "not_claimed"
    services.campaign_resume(campaign_id=campaign.pk)
    pacer.resume(campaign_id=campaign.pk)  # on_commit work does not run inside a test transaction

    assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1


def test_a_worker_past_its_claim_hands_the_delivery_back_when_the_campaign_pauses(teams):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()
    pacer.stop(campaign_id=campaign.pk, reason="paused")  # seen by a worker that already claimed

    assert delivery_send(delivery_id=delivery.pk).status == "pending"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert teams.client.messages(user=str(person.aad_object_id)) == []


def test_nothing_is_sent_for_a_campaign_cancelled_while_a_worker_held_its_delivery(teams):
    campaign, [person] = launched()
    delivery = campaign.deliveries.get()
    pacer.stop(campaign_id=campaign.pk, reason="cancelled")

    assert delivery_send(delivery_id=delivery.pk).status == "skipped"

    delivery.refresh_from_db()
    assert delivery.skip_reason == "campaign_cancelled"
    assert teams.client.messages(user=str(person.aad_object_id)) == []


def test_cancel_skips_the_rest_and_later_tasks_send_nothing(teams):
    campaign, people = launched(3)
    first, *rest = campaign.deliveries.order_by("id")
    delivery_send(delivery_id=first.pk)

    services.campaign_cancel(campaign_id=campaign.pk)

    assert [delivery_send(delivery_id=d.pk).status for d in rest] == ["not_claimed", "not_claimed"]
    assert dict(campaign.deliveries.values_list("status", "skip_reason").order_by("id")[1:]) == {
        "skipped": "campaign_cancelled"
    }
    assert teams.client.stats()["messages"] == 1
    with pytest.raises(ApplicationError):
        services.campaign_resume(campaign_id=campaign.pk)


def test_a_campaign_pauses_itself_when_sends_fail_for_reasons_not_about_one_person(teams, settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    settings.BOT_APP_PASSWORD = "wrong"
    campaign, _ = launched(5)

    outcomes = [delivery_send(delivery_id=d.pk).status for d in campaign.deliveries.order_by("id")]

    campaign.refresh_from_db()
    assert outcomes[:3] == ["failed"] * 3 and outcomes[3:] == ["not_claimed"] * 2
    assert campaign.status == Campaign.Status.PAUSED
    assert "invalid_client" in campaign.status_reason and "401" in campaign.status_reason


def test_blocked_people_do_not_pause_a_campaign(teams, settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 2
    campaign, people = launched(3)
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "name": "x"} for p in people])
    for person in people:
        teams.client.block(str(person.aad_object_id))

    for delivery in campaign.deliveries.all():
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_progress_counts_rate_and_time_left_come_from_counters(teams):
    campaign, _ = launched(4)
    deliveries = list(campaign.deliveries.order_by("id"))
    for delivery in deliveries[:3]:
        delivery_send(delivery_id=delivery.pk)

    campaign.refresh_from_db()
    current = progress.read(campaign)

    assert (current["total"], current["sent"], current["remaining"]) == (4, 3, 1)
    assert current["rate_per_second"] > 0 and current["eta_seconds"] is not None


def test_progress_is_rebuilt_from_the_rows_when_redis_lost_it(teams, redis_client):
    campaign, _ = launched(2)
    delivery_send(delivery_id=campaign.deliveries.first().pk)
    redis_client.flushdb()

    campaign.refresh_from_db()
    current = progress.read(campaign)

    assert (current["total"], current["sent"], current["remaining"]) == (2, 1, 1)


# --- What resume does once it has committed (real commits, so on_commit work runs) ----------------


def queued_tasks(redis_client, queue="control") -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in redis_client.lrange(queue, 0, -1)]


def queued_deliveries(redis_client) -> list[int]:
    bodies = [json.loads(raw)["body"] for raw in redis_client.lrange(feeding.QUEUE, 0, -1)]
    return [json.loads(base64.b64decode(body))[0][0] for body in bodies]


@pytest.fixture
def paused(teams, redis_client):
    """A running campaign of three people, fed once, then paused; nothing left in the queues."""
    campaign, people = launched(3)
    assert feeding.feed() == 3
    services.campaign_pause(campaign_id=campaign.pk)
    redis_client.delete(feeding.QUEUE, "control")  # the workers dropped what was queued: it is not claimed
    return campaign, people


@pytest.mark.django_db(transaction=True)
def test_it_clears_the_stop_flag_once_resume_commits(paused, redis_client, teams):
    campaign, [person, *_] = paused
    assert redis_client.exists(stop_key(campaign.pk))

    services.campaign_resume(campaign_id=campaign.pk)

    assert not redis_client.exists(stop_key(campaign.pk))
    first = campaign.deliveries.order_by("id").first()
    assert delivery_send(delivery_id=first.pk).status == "sent"  # a worker past its claim sends it
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_stop_flag_when_resume_rolls_back(paused, redis_client):
    campaign, _ = paused

    with pytest.raises(RuntimeError), transaction.atomic():
        services.campaign_resume(campaign_id=campaign.pk)
        raise RuntimeError("something after it in the same transaction failed")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert redis_client.exists(stop_key(campaign.pk))
    assert queued_tasks(redis_client) == []


@pytest.mark.django_db(transaction=True)
def test_it_resets_the_error_watch_once_resume_commits(paused, settings):
    campaign, _ = paused
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    # The watch as it stood when it paused the campaign: 3 failures not about one person, of 3 sends.
    progress.client().hset(progress.key(campaign.pk), mapping={"systemic": 3, "failed": 3})

    services.campaign_resume(campaign_id=campaign.pk)
    campaign_watch_errors(campaign_id=campaign.pk, error=TransportError(status=503, code="ServiceUnavailable",
                                                                          message="Teams is busy", permanent=False))

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # one more failure is not a reason to pause again


@pytest.mark.django_db(transaction=True)
def test_it_rewinds_the_feed_once_resume_commits(paused, redis_client):
    campaign, _ = paused
    assert feeding.feed() == 0  # fed already: the cursor is past every row

    services.campaign_resume(campaign_id=campaign.pk)

    assert feeding.feed() == 3  # the rows handed back while paused are queued again
    assert sorted(queued_deliveries(redis_client)) == sorted(campaign.deliveries.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_it_queues_a_feeding_tick_once_resume_commits(paused, redis_client):
    campaign, _ = paused

    services.campaign_resume(campaign_id=campaign.pk)

    assert queued_tasks(redis_client) == ["delivery.tasks.feed_deliveries"]


# --- The rules of pause, resume and cancel: states, reasons, audit, the stop flag, the rows ---------


def stop_flag(redis_client, campaign) -> bytes | None:
    return redis_client.get(stop_key(campaign.pk))


def audit(campaign) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(campaign=campaign).order_by("id").values_list("action", "summary"))


def test_it_pauses_a_running_campaign_with_the_reason_an_audit_entry_and_the_stop_flag(redis_client):
    campaign, _ = launched()

    services.campaign_pause(campaign_id=campaign.pk, reason="Wrong link in the message")

    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason) == ("paused", "Wrong link in the message")
    assert audit(campaign)[-1] == ("pause", f"Paused “{campaign}”: Wrong link in the message")
    assert stop_flag(redis_client, campaign) == b"paused"


def test_it_says_a_person_paused_when_no_reason_is_given_and_keeps_500_characters_of_a_long_one():
    first, _ = launched()
    second, _ = launched()

    services.campaign_pause(campaign_id=first.pk)
    services.campaign_pause(campaign_id=second.pk, reason="r" * 600)

    first.refresh_from_db(), second.refresh_from_db()
    assert first.status_reason == "Paused by a person."
    assert second.status_reason == "r" * 500


@pytest.mark.parametrize("status", ["draft", "scheduled", "paused", "completed", "cancelled"])
def test_it_refuses_to_pause_a_campaign_that_is_not_running(status, redis_client):
    campaign = factories.campaign(status=status)

    with pytest.raises(ApplicationError) as raised:
        services.campaign_pause(campaign_id=campaign.pk)

    error = raised.value
    assert (error.code, error.status) == ("invalid_state", 409)
    assert error.message == f"Campaign {campaign.pk} is {status}; only a running campaign can be paused."
    campaign.refresh_from_db()
    assert campaign.status == status
    assert audit(campaign) == [] and stop_flag(redis_client, campaign) is None


@pytest.mark.parametrize("status", ["draft", "scheduled", "running", "completed", "cancelled"])
def test_it_refuses_to_resume_a_campaign_that_is_not_paused(status):
    campaign = factories.campaign(status=status, status_reason="as it was")

    with pytest.raises(ApplicationError) as raised:
        services.campaign_resume(campaign_id=campaign.pk)

    error = raised.value
    assert (error.code, error.status) == ("invalid_state", 409)
    assert error.message == f"Campaign {campaign.pk} is {status}; only a paused campaign can be resumed."
    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason) == (status, "as it was")


def test_it_resumes_with_no_reason_left_an_audit_entry_and_retries_due_at_once():
    campaign, _ = launched(3)
    retrying, waiting, pending = campaign.deliveries.order_by("id")
    later = timezone.now() + timedelta(hours=1)
    Delivery.objects.filter(pk=retrying.pk).update(status="retrying", attempts=1, next_attempt_at=later)
    services.campaign_pause(campaign_id=campaign.pk, reason="Checking the wording")
    before = timezone.now()

    services.campaign_resume(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason) == ("running", "")
    assert audit(campaign)[-1] == ("resume", f"Resumed “{campaign}”")
    retrying.refresh_from_db(), pending.refresh_from_db()
    assert before <= retrying.next_attempt_at <= timezone.now()
    assert pending.next_attempt_at is None and pending.status == "pending"


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_it_refuses_to_cancel_a_campaign_that_is_over(status, redis_client):
    campaign = factories.campaign(status=status)

    with pytest.raises(ApplicationError) as raised:
        services.campaign_cancel(campaign_id=campaign.pk)

    error = raised.value
    assert (error.code, error.status) == ("invalid_state", 409)
    assert error.message == f"Campaign {campaign.pk} is already {status}."
    campaign.refresh_from_db()
    assert (campaign.status, campaign.cancelled_at) == (status, None)
    assert stop_flag(redis_client, campaign) is None


@pytest.mark.parametrize("status", ["draft", "scheduled", "running", "paused"])
def test_it_cancels_a_campaign_that_is_not_over(status, redis_client):
    campaign = factories.campaign(status=status)
    before = timezone.now()

    services.campaign_cancel(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == "cancelled" and before <= campaign.cancelled_at <= timezone.now()
    assert audit(campaign) == [("cancel", f"Cancelled “{campaign}”")]
    assert stop_flag(redis_client, campaign) == b"cancelled"


def unfinished_mix():
    """A running campaign of five: sent, failed, retrying, pending, pending; and another one, all pending."""
    campaign, _ = launched(5)
    sent, failed, retrying, *pending = campaign.deliveries.order_by("id")
    Delivery.objects.filter(pk=sent.pk).update(status="sent", finished_at=timezone.now())
    Delivery.objects.filter(pk=failed.pk).update(status="failed", error_code="Forbidden", finished_at=timezone.now())
    Delivery.objects.filter(pk=retrying.pk).update(status="retrying", attempts=1, next_attempt_at=timezone.now())
    other, _ = launched(1)
    return campaign, other


def outcomes(campaign) -> list[tuple[str, str]]:
    return list(campaign.deliveries.order_by("id").values_list("status", "skip_reason"))


def skipped_counter(campaign) -> int:
    return int(progress.client().hget(progress.key(campaign.pk), "skipped") or 0)


def test_it_skips_exactly_the_unfinished_rows_of_the_cancelled_campaign_and_counts_them():
    campaign, other = unfinished_mix()

    services.campaign_cancel(campaign_id=campaign.pk)

    assert outcomes(campaign) == [("sent", ""), ("failed", ""), ("skipped", "campaign_cancelled"),
                                  ("skipped", "campaign_cancelled"), ("skipped", "campaign_cancelled")]
    assert None not in campaign.deliveries.filter(status="skipped").values_list("finished_at", flat=True)
    assert skipped_counter(campaign) == 3
    assert set(outcomes(other)) == {("pending", "")} and skipped_counter(other) == 0


def test_it_tells_webhook_subscribers_of_each_row_it_skips_and_counts_them(redis_client):
    campaign, other = unfinished_mix()
    WebhookEndpoint.objects.create(name="hr", url="https://hooks.example/", secret="s", events=["delivery.skipped"])
    webhooks.forget_subscriptions()
    try:
        services.campaign_cancel(campaign_id=campaign.pk)
    finally:
        webhooks.forget_subscriptions()

    skipped = list(campaign.deliveries.filter(status="skipped").order_by("id").values_list("id", flat=True))
    events = WebhookEvent.objects.filter(type="delivery.skipped").order_by("id")
    assert sorted(e.payload["delivery"] for e in events) == skipped and len(skipped) == 3
    assert {(e.payload["campaign"], e.payload["skip_reason"]) for e in events} == {(campaign.pk, "campaign_cancelled")}
    assert skipped_counter(campaign) == 3
    assert set(outcomes(other)) == {("pending", "")}


class Clock:
    """Stands in for the ``time`` module of delivery.control: each sleep moves the clock ``step`` on."""

    def __init__(self, step: float, on_sleep=None) -> None:
        self.now, self.step, self.on_sleep, self.sleeps = 0.0, step, on_sleep, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += self.step
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def sending_campaign():
    campaign, _ = launched(2)
    on_the_wire = campaign.deliveries.order_by("id").first()
    Delivery.objects.filter(pk=on_the_wire.pk).update(status="sending", claimed_at=timezone.now(), attempts=1)
    return campaign, on_the_wire


def test_it_returns_from_cancel_at_once_when_no_send_is_on_its_way(monkeypatch, settings):
    settings.CANCEL_DRAIN_SECONDS = 1.0
    campaign, _ = launched(2)
    monkeypatch.setattr(control, "time", clock := Clock(step=0.25))

    services.campaign_cancel(campaign_id=campaign.pk)

    assert clock.sleeps == []


def test_it_waits_in_short_steps_for_a_send_on_its_way_until_it_is_recorded(monkeypatch, settings):
    settings.CANCEL_DRAIN_SECONDS = 1.0
    campaign, on_the_wire = sending_campaign()

    def recorded(sleeps: int) -> None:
        if sleeps == 2:
            Delivery.objects.filter(pk=on_the_wire.pk).update(status="sent", finished_at=timezone.now())

    monkeypatch.setattr(control, "time", clock := Clock(step=0.25, on_sleep=recorded))

    services.campaign_cancel(campaign_id=campaign.pk)

    assert clock.sleeps == [0.05, 0.05]


def test_it_stops_waiting_for_a_send_at_the_drain_deadline(monkeypatch, settings):
    settings.CANCEL_DRAIN_SECONDS = 1.0
    campaign, on_the_wire = sending_campaign()
    monkeypatch.setattr(control, "time", clock := Clock(step=0.25))

    services.campaign_cancel(campaign_id=campaign.pk)

    assert clock.sleeps == [0.05] * 4  # at 0, 0.25, 0.5 and 0.75 s; at 1.0 s the deadline has come
    on_the_wire.refresh_from_db()
    assert on_the_wire.status == "sending"  # the worker still records it; the other row was skipped
    assert outcomes(campaign)[1] == ("skipped", "campaign_cancelled")


# --- The error watch: which failures count, and its exact thresholds ----------------------------------


def failure(code="ServiceUnavailable", status=503, message="Teams is busy"):
    """Teams' answer as the Teams channel hands it to delivery."""
    return classify(ConnectorError(status=status, code=code, message=message))


def counters(campaign, **values) -> None:
    progress.client().hset(progress.key(campaign.pk), mapping=values)


def status_of(campaign) -> str:
    campaign.refresh_from_db()
    return campaign.status


@pytest.mark.parametrize("code", ["ConversationBlockedByUser", "MessageWritesBlocked", "209",
                                  "ForbiddenOperationException", "BotNotInConversationRoster"])
def test_it_does_not_count_failures_about_one_person(code, settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 1
    campaign, _ = launched()

    campaign_watch_errors(campaign_id=campaign.pk, error=failure(code=code, status=403))

    assert progress.client().hget(progress.key(campaign.pk), "systemic") is None
    assert status_of(campaign) == "running"


def test_it_pauses_at_the_minimum_number_of_failures_not_before(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    settings.CAMPAIGN_PAUSE_ERROR_RATE = 0.5
    campaign, _ = launched()
    counters(campaign, failed=3)

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())
    campaign_watch_errors(campaign_id=campaign.pk, error=failure())
    assert status_of(campaign) == "running"
    assert progress.client().hget(progress.key(campaign.pk), "systemic") == b"2"

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())
    assert status_of(campaign) == "paused"


@pytest.mark.parametrize("sent, failed, status", [
    (3, 3, "paused"),  # 3 of 6 finished sends failed: the rate exactly
    (5, 2, "running"),  # 3 of 7: below the rate
], ids=["at-the-rate", "below-the-rate"])
def test_it_pauses_once_the_share_of_failures_reaches_the_rate_and_not_before(settings, sent, failed, status):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    settings.CAMPAIGN_PAUSE_ERROR_RATE = 0.5
    campaign, _ = launched()
    counters(campaign, sent=sent, failed=failed, systemic=2)

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())  # the third systemic failure

    assert status_of(campaign) == status


def test_it_counts_finished_sends_missing_from_the_counters_as_none(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 3
    settings.CAMPAIGN_PAUSE_ERROR_RATE = 0.55
    campaign, _ = launched()
    counters(campaign, failed=5, systemic=2)  # nothing sent yet

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())  # 3 of 5: 60 %

    assert status_of(campaign) == "paused"


def test_it_judges_the_first_failure_against_one_finished_send_when_none_is_counted(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 1
    settings.CAMPAIGN_PAUSE_ERROR_RATE = 0.75
    campaign, _ = launched()

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())  # 1 of (at least) 1

    assert status_of(campaign) == "paused"


def test_it_gives_the_share_and_the_latest_failure_as_the_reason(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 2
    campaign, _ = launched()
    counters(campaign, sent=1, failed=2, systemic=1)

    campaign_watch_errors(campaign_id=campaign.pk, error=failure(message="m" * 300))

    campaign.refresh_from_db()
    assert campaign.status_reason == (
        "Paused automatically: 67% of finished sends failed for reasons that are not about one person; "
        "the latest was 503 ServiceUnavailable: " + "m" * 200
    )


def test_it_names_a_failure_without_an_answer_as_such_in_the_reason(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 1
    campaign, _ = launched()
    counters(campaign, failed=1)

    campaign_watch_errors(campaign_id=campaign.pk, error=failure(code="Timeout", status=None, message="read timed out"))

    campaign.refresh_from_db()
    assert campaign.status_reason.endswith("; the latest was no answer Timeout: read timed out")


def test_it_leaves_a_campaign_that_is_no_longer_running_as_it_is(settings):
    settings.CAMPAIGN_PAUSE_MIN_FAILURES = 1
    campaign, _ = launched()
    services.campaign_cancel(campaign_id=campaign.pk)

    campaign_watch_errors(campaign_id=campaign.pk, error=failure())

    assert status_of(campaign) == "cancelled"
