"""Urgent campaigns (``Campaign.urgent``): once a person's message is sent, its pop-up goes to their Teams activity
feed through the emulator's Microsoft Graph, up to 100 people a call, by one notifier at a time; every outcome
stays on the row."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from bots.notices import NoticeRefused, chat_link
from campaigns.approvals import approval_fingerprint
from campaigns.models import AuditEntry, Campaign
from delivery import control, jobs, notifying, progress, recovery, services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db
WORDS = "The Leeds office is closed today: work from home."


@pytest.fixture(autouse=True)
def woken(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(jobs, "send_notices", lambda patience=0.0: calls.append(patience))
    return calls


def with_app(teams, count: int = 1) -> list:
    people = [factories.recipient() for _ in range(count)]
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "installed": True} for p in people])
    return people


def launched(**fields):
    fields = {"urgent": True, "urgent_text": WORDS, **fields}
    campaign = factories.campaign(**fields)
    if campaign.urgent:  # approved as it stands: an urgent campaign always needs it
        campaign.approved_at, campaign.approved_fingerprint = timezone.now(), approval_fingerprint(campaign=campaign)
        campaign.save(update_fields=["approved_at", "approved_fingerprint"])
    services.campaign_launch(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    return campaign


def rows(campaign) -> list[Delivery]:
    return list(Delivery.objects.of_campaign(campaign.pk).order_by("id"))


def sent_with_notices_due(campaign, *, sent_ago: timedelta = timedelta(0)) -> None:
    """The campaign's rows as the sends leave them: sent, their notices due (without a call to Teams each)."""
    Delivery.objects.of_campaign(campaign.pk).update(status="sent", notice="due", finished_at=timezone.now() - sent_ago)


def counter(campaign, name: str) -> int:
    value = progress.client().hget(progress.key(campaign.pk), name)
    return int(value or 0)


def test_an_urgent_campaigns_sent_message_has_its_notice_due_and_a_notifier_woken(teams, woken):
    [person] = with_app(teams)
    campaign = launched()
    [delivery] = rows(campaign)

    assert delivery_send(delivery_id=delivery.pk).status == "sent"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.notice) == ("sent", "due")
    assert woken == [0.0]
    assert teams.client.graph_activity(str(person.aad_object_id)) == []  # the send itself notifies nobody


def test_a_campaign_that_is_not_urgent_has_no_notice_and_wakes_no_notifier(teams, woken):
    with_app(teams)
    campaign = launched(urgent=False, urgent_text="")
    [delivery] = rows(campaign)

    delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.notice, woken) == ("sent", "", [])


def test_the_notifier_pops_the_notice_up_in_the_persons_feed_linking_to_their_chat_with_the_bot(teams, settings):
    [person] = with_app(teams)
    campaign = launched()
    [delivery] = rows(campaign)
    delivery_send(delivery_id=delivery.pk)

    assert notifying.notices_run() == 1

    delivery.refresh_from_db()
    assert delivery.notice == "notified"
    [shown] = teams.client.graph_activity(str(person.aad_object_id))
    assert shown["activityType"] == "urgentAnnouncement"
    assert shown["previewText"] == WORDS
    assert shown["topic"] == {"source": "text", "value": WORDS, "webUrl": chat_link()}
    assert chat_link().endswith(f"/l/chat/0/0?users=28:{settings.BOT_APP_ID}")
    assert counter(campaign, "notified") == 1 and progress.read(campaign)["notified"] == 1


def test_notices_go_a_hundred_people_a_call(teams):
    people = with_app(teams, 250)
    campaign = launched(audience=None)
    assert len(rows(campaign)) >= 250
    sent_with_notices_due(campaign)

    taken = notifying.notices_run()

    stats = teams.client.graph_stats()
    assert taken == len(rows(campaign))
    assert stats["activity_calls"] == -(-taken // 100)  # 100, 100, then the rest
    assert stats["activity_delivered"] == 250
    assert {row.notice for row in rows(campaign)} == {"notified"}
    assert len(teams.client.graph_activity(str(people[-1].aad_object_id))) == 1


def test_a_missing_permission_fails_the_notices_once_audited_without_asking_graph_for_each_batch(teams):
    with_app(teams, 150)
    teams.client.graph_config(permissions=["User.Read.All"])  # no TeamsActivity.Send
    campaign = launched(audience=None)
    sent_with_notices_due(campaign)

    notifying.notices_run()

    assert {row.notice for row in rows(campaign)} == {"failed"}
    assert teams.client.graph_stats()["activity_calls"] == 1  # the next batch failed on the refusal kept
    assert counter(campaign, "notice_failed") == len(rows(campaign))
    [entry] = AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.NOTICE_REFUSED)
    assert "TeamsActivity.Send" in entry.summary and entry.detail["code"] == "NoticeConsentMissing"
    assert all(row.status == "sent" for row in rows(campaign))  # the messages themselves stand


def test_graph_unavailable_hands_the_notices_back_and_pauses_before_trying_again(teams, monkeypatch):
    with_app(teams, 3)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign)

    def unavailable(**_):
        raise NoticeRefused("GraphUnavailable", "Graph answered 503", transient=True)

    monkeypatch.setattr(notifying._notifier, "send", unavailable)
    taken = notifying._take(campaign.pk)
    refusals = notifying._Refusals()

    assert notifying._notify(campaign.pk, taken, refusals) == notifying.BACKOFF_SECONDS[0]
    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), refusals) == notifying.BACKOFF_SECONDS[1]
    assert {(row.notice, row.claimed_at) for row in rows(campaign)} == {("due", None)}
    assert counter(campaign, "notice_failed") == 0


def test_a_notice_whose_message_was_sent_long_ago_fails_without_a_call(teams):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign, sent_ago=timedelta(seconds=notifying.STALE_SECONDS + 60))

    notifying.notices_run()

    assert {row.notice for row in rows(campaign)} == {"failed"}
    assert teams.client.graph_stats()["activity_calls"] == 0


def test_a_paused_campaigns_notices_wait_for_its_resume(teams, woken, django_capture_on_commit_callbacks):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    control.campaign_pause(campaign_id=campaign.pk, reason="checking")

    assert notifying.notices_run() == 0
    assert notifying.notifier_check() is False  # nothing a notifier could take

    with django_capture_on_commit_callbacks(execute=True):
        control.campaign_resume(campaign_id=campaign.pk)
    assert woken == [0.0]
    assert notifying.notices_run() == 1
    assert {row.notice for row in rows(campaign)} == {"notified"}


def test_a_cancel_drops_the_notices_not_sent(teams):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)

    control.campaign_cancel(campaign_id=campaign.pk)

    assert {row.notice for row in rows(campaign)} == {""}
    assert notifying.notices_run() == 0


def test_a_recall_drops_the_notices_not_sent(teams, monkeypatch):
    from delivery import message_changes

    [person] = with_app(teams)
    campaign = launched()
    [delivery] = rows(campaign)
    delivery_send(delivery_id=delivery.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status="completed", completed_at=timezone.now())
    monkeypatch.setattr(message_changes, "chains_start", lambda **_: None)
    user = User.objects.create_user("rhea", "rhea@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="recall_campaign"))
    user = User.objects.get(pk=user.pk)

    message_changes.message_change_start(campaign_id=campaign.pk, action="recall", user=user)

    delivery.refresh_from_db()
    assert delivery.notice == ""
    assert notifying.notices_run() == 0


def test_notices_claimed_by_a_notifier_that_died_are_taken_again_after_the_lease_and_not_before(teams):
    with_app(teams, 2)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign)
    first, second = rows(campaign)[:2]
    long_ago = timezone.now() - timedelta(seconds=notifying.LEASE_SECONDS + 5)
    Delivery.objects.filter(pk=first.pk).update(notice="sending", claimed_at=long_ago)
    Delivery.objects.filter(pk=second.pk).update(notice="sending", claimed_at=timezone.now())

    taken = {row.id for row in notifying._take(campaign.pk)}

    assert first.pk in taken and second.pk not in taken


def test_an_outcome_for_a_claim_since_taken_again_changes_nothing(teams):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    [row] = notifying._take(campaign.pk)
    Delivery.objects.filter(pk=row.id).update(claimed_at=timezone.now() + timedelta(seconds=1))  # another's claim

    notifying._record(campaign.pk, [row], notice="failed")

    assert rows(campaign)[0].notice == "sending"
    assert counter(campaign, "notice_failed") == 0


def test_the_reconciler_starts_a_notifier_when_notices_wait_and_none_runs(teams, woken):
    with_app(teams)
    campaign = launched()

    assert recovery.reconcile()["notifier_started"] == 0
    sent_with_notices_due(campaign)
    assert recovery.reconcile()["notifier_started"] == 1
    assert woken == [0.0]


def test_counters_lost_with_redis_are_rebuilt_with_the_notices(teams):
    with_app(teams, 2)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign)
    first, *others = rows(campaign)
    Delivery.objects.filter(pk=first.pk).update(notice="notified")
    Delivery.objects.filter(pk__in=[row.pk for row in others]).update(notice="failed")
    progress.client().delete(progress.key(campaign.pk))

    counts = progress.read(campaign)

    assert (counts["notified"], counts["notice_failed"]) == (1, len(others))


def test_a_notice_whose_answer_was_lost_is_counted_as_sent_and_never_sent_again(teams, monkeypatch):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)

    def lost(**_):
        raise NoticeRefused("GraphNoAnswer", "the answer was lost")

    monkeypatch.setattr(notifying._notifier, "send", lost)
    notifying.notices_run()

    assert {row.notice for row in rows(campaign)} == {"unanswered"}
    assert counter(campaign, "notified") == 1 and counter(campaign, "notice_failed") == 0
    assert notifying._next_campaign() is None


@pytest.mark.parametrize("withdraw", ["cancel", "recall"])
def test_a_batch_on_its_way_when_the_campaign_is_cancelled_or_recalled_never_comes_back(teams, monkeypatch, withdraw):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    taken = notifying._take(campaign.pk)

    if withdraw == "cancel":
        control.campaign_cancel(campaign_id=campaign.pk)
    else:
        notifying.notices_drop(campaign_id=campaign.pk)
    notifying._release(taken)  # Graph was unavailable for that batch

    assert {row.notice for row in rows(campaign)} == {""}
    assert notifying._next_campaign() is None and notifying.notices_run() == 0


def test_a_campaign_paused_after_it_was_chosen_gives_no_rows(teams):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    assert notifying._next_campaign() == campaign.pk
    control.campaign_pause(campaign_id=campaign.pk, reason="checking")

    assert notifying._take(campaign.pk) == []


def test_the_next_campaign_is_one_whose_notices_may_go_whatever_a_paused_one_holds(teams):
    with_app(teams, 2)
    paused, running = launched(audience=None), launched(audience=None)
    sent_with_notices_due(paused)
    sent_with_notices_due(running)
    control.campaign_pause(campaign_id=paused.pk, reason="checking")

    assert notifying._next_campaign() == running.pk


def test_only_one_notifier_works_at_a_time_and_the_reconciler_starts_none_beside_it(teams, woken):
    from django.db import connections

    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    other = connections.create_connection("default")  # another worker's notifier, at work
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", [notifying.NOTIFIER_LOCK])

        assert notifying.notices_run() == 0
        assert notifying.notifier_check() is False and woken == []
    finally:
        other.close()
    deadline = time.monotonic() + 5  # the other connection's backend lets go of the lock as it ends
    while not notifying.notifier_check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert woken == [0.0]


def test_a_notifier_is_woken_once_in_a_while_however_many_sends_ask(woken):
    notifying.notifier_wake()
    notifying.notifier_wake()

    assert woken == [0.0]
    assert 0 < progress.client().ttl(notifying.WAKE_KEY) <= notifying.WAKE_SECONDS


def test_a_set_up_refusal_is_kept_a_while_then_graph_is_asked_again(monkeypatch):
    refusals = notifying._Refusals(refused=NoticeRefused("NoticeConsentMissing", "grant it"), at=100.0)

    monkeypatch.setattr(notifying.time, "monotonic", lambda: 100.0 + notifying.REFUSAL_KEPT_SECONDS - 0.001)
    assert refusals.kept() is refusals.refused
    monkeypatch.setattr(notifying.time, "monotonic", lambda: 100.0 + notifying.REFUSAL_KEPT_SECONDS)
    assert refusals.kept() is None


def test_the_stale_notices_are_counted_for_their_campaign_and_a_lost_answer_asks_no_pause(teams, monkeypatch):
    with_app(teams, 2)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign, sent_ago=timedelta(seconds=notifying.STALE_SECONDS + 60))
    first, second = rows(campaign)
    Delivery.objects.filter(pk=second.pk).update(finished_at=timezone.now())

    def lost(**_):
        raise NoticeRefused("GraphNoAnswer", "the answer was lost")

    monkeypatch.setattr(notifying._notifier, "send", lost)

    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), notifying._Refusals()) == 0.0
    assert (counter(campaign, "notice_failed"), counter(campaign, "notified")) == (1, 1)


def test_a_refusal_is_audited_once_an_hour_for_each_campaign_and_cause(teams):
    with_app(teams)
    campaign, other = launched(), launched()
    consent = NoticeRefused("NoticeConsentMissing", "x" * 600)

    notifying._audit_refusal(campaign.pk, consent)
    notifying._audit_refusal(campaign.pk, consent)
    notifying._audit_refusal(campaign.pk, NoticeRefused("GraphRefused", "another cause"))
    notifying._audit_refusal(other.pk, consent)

    entries = AuditEntry.objects.filter(action=AuditEntry.Action.NOTICE_REFUSED)
    assert sorted((e.campaign_id, e.detail["code"]) for e in entries) == sorted(
        [(campaign.pk, "NoticeConsentMissing"), (campaign.pk, "GraphRefused"), (other.pk, "NoticeConsentMissing")])
    long = entries.get(campaign=campaign, detail__code="NoticeConsentMissing")
    assert len(long.summary) == 500 and long.detail["message"] == "x" * 600
    key = notifying.AUDITED_KEY.format(campaign=campaign.pk, code="NoticeConsentMissing")
    assert 0 < progress.client().ttl(key) <= notifying.AUDITED_SECONDS



class Clock:
    """A clock the notifier's loop runs by: each sleep moves it on, and is recorded."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_loop_pauses_as_asked_within_its_run_and_a_batch_that_raised_pauses_a_second(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(notifying, "time", clock)
    monkeypatch.setattr(notifying, "RUN_SECONDS", 8.0)
    answers = iter([5.0, RuntimeError("a bug"), 0.0])
    campaigns = iter([7, 7, 7, None, None])
    monkeypatch.setattr(notifying, "_next_campaign", lambda: next(campaigns))
    monkeypatch.setattr(notifying, "_take", lambda campaign_id: [])

    def notify(campaign_id, rows, refusals):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(notifying, "_notify", notify)

    notifying._run()

    assert clock.slept == [5.0, 1.0]  # the pause asked for, then a second after the batch that raised


@pytest.mark.parametrize("run_seconds", [3.0, 0.5])
def test_the_last_pause_ends_with_the_run(monkeypatch, run_seconds):
    clock = Clock()
    monkeypatch.setattr(notifying, "time", clock)
    monkeypatch.setattr(notifying, "RUN_SECONDS", run_seconds)
    monkeypatch.setattr(notifying, "_next_campaign", lambda: 7)
    monkeypatch.setattr(notifying, "_take", lambda campaign_id: [])
    monkeypatch.setattr(notifying, "_notify", lambda campaign_id, rows, refusals: 30.0)

    notifying._run()

    assert clock.slept == [run_seconds]


def test_every_batch_that_went_asks_no_pause_and_graph_back_starts_the_pauses_over(teams, monkeypatch):
    with_app(teams, 3)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign)
    answers = iter([NoticeRefused("GraphUnavailable", "503", transient=True), None,
                    NoticeRefused("GraphUnavailable", "503", transient=True)])

    def send(**_):
        answer = next(answers)
        if answer is not None:
            raise answer

    monkeypatch.setattr(notifying._notifier, "send", send)
    refusals = notifying._Refusals()

    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), refusals) == notifying.BACKOFF_SECONDS[0]
    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), refusals) == 0.0
    Delivery.objects.of_campaign(campaign.pk).update(notice="due", claimed_at=None)
    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), refusals) == notifying.BACKOFF_SECONDS[0]


def test_a_set_up_refusal_and_a_batch_of_stale_notices_ask_no_pause(teams, monkeypatch):
    with_app(teams, 2)
    campaign = launched(audience=None)
    sent_with_notices_due(campaign, sent_ago=timedelta(seconds=notifying.STALE_SECONDS + 60))
    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), notifying._Refusals()) == 0.0

    Delivery.objects.of_campaign(campaign.pk).update(notice="due", claimed_at=None, finished_at=timezone.now())

    def refused(**_):
        raise NoticeRefused("NoticeConsentMissing", "grant it")

    monkeypatch.setattr(notifying._notifier, "send", refused)
    assert notifying._notify(campaign.pk, notifying._take(campaign.pk), notifying._Refusals()) == 0.0


def test_a_campaign_whose_words_went_meanwhile_pops_nothing_up(teams):
    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    taken = notifying._take(campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(urgent_text="")

    assert notifying._notify(campaign.pk, taken, notifying._Refusals()) == 0.0

    assert {row.notice for row in rows(campaign)} == {"failed"}
    assert teams.client.graph_stats()["activity_calls"] == 0 and counter(campaign, "notice_failed") == 1


def test_a_notifier_handed_on_to_waits_for_the_lock_its_forerunner_lets_go_of(teams):
    import threading

    import psycopg
    from django.db import connection

    with_app(teams)
    campaign = launched()
    sent_with_notices_due(campaign)
    forerunner = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    forerunner.execute("SELECT pg_advisory_lock(%s, 0)", [notifying.NOTIFIER_LOCK])
    threading.Timer(0.5, forerunner.close).start()  # it ends a moment later

    assert notifying.notices_run(patience=10.0) == 1
    assert {row.notice for row in rows(campaign)} == {"notified"}
