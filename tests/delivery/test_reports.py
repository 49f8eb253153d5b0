"""States over time (per-minute buckets in Redis, rebuilt from the rows) and the failure and skip
reasons the watch page explains, against the emulator, PostgreSQL and Redis."""

import datetime

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from django.utils import timezone

from campaigns.models import OptOut
from delivery import progress, reports, services
from delivery.models import Delivery
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def launched(people):
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    return campaign, [campaign.deliveries.get(recipient=person) for person in people]


def this_minute() -> int:
    now = int(timezone.now().timestamp())
    return now - now % 60


def test_each_end_state_is_counted_in_this_minutes_bucket_as_deliveries_finish(teams, redis_client):
    people = [factories.recipient() for _ in range(3)]
    teams.client.register_users([{"aad_object_id": str(people[2].aad_object_id), "name": "Blocker"}])
    teams.client.block(str(people[2].aad_object_id))
    campaign, deliveries = launched(people)

    for delivery in deliveries:
        delivery_send(delivery_id=delivery.pk)

    buckets = {k.decode(): int(v) for k, v in redis_client.hgetall(progress.timeline_key(campaign.pk)).items()}
    minute = this_minute()
    assert buckets.get(f"{minute}:sent", buckets.get(f"{minute - 60}:sent")) == 2
    assert buckets.get(f"{minute}:failed", buckets.get(f"{minute - 60}:failed")) == 1
    assert redis_client.ttl(progress.timeline_key(campaign.pk)) > 29 * 24 * 3600


def test_the_timeline_is_cumulative_minute_by_minute(monkeypatch, redis_client):
    campaign = factories.campaign()
    clock = {"now": 1_800_000_000.0}  # a minute boundary
    monkeypatch.setattr(progress.time, "time", lambda: clock["now"])
    progress.record(campaign.pk, skipped=4, start=True)
    progress.record(campaign.pk, sent=1)
    clock["now"] += 61
    progress.record(campaign.pk, sent=1)
    progress.record(campaign.pk, failed=1)
    progress.record(campaign.pk, ambiguous=1)  # a flag, not an end state: not on the timeline

    assert progress.timeline(campaign.pk) == [
        {"minute": 1_800_000_000, "sent": 1, "failed": 0, "skipped": 4},
        {"minute": 1_800_000_060, "sent": 2, "failed": 1, "skipped": 4},
    ]


def test_a_long_timeline_is_sampled_down_and_still_ends_at_the_totals(redis_client):
    campaign = factories.campaign()
    start = 1_800_000_000
    fields = {f"{start + 60 * n}:sent": 1 for n in range(3000)}
    redis_client.hset(progress.timeline_key(campaign.pk), mapping={**fields, "built": 1})

    points = progress.timeline(campaign.pk)

    assert len(points) == progress.TIMELINE_MAX_POINTS
    assert points[0] == {"minute": start, "sent": 1, "failed": 0, "skipped": 0}
    assert points[-1] == {"minute": start + 60 * 2999, "sent": 3000, "failed": 0, "skipped": 0}
    assert all(a["minute"] < b["minute"] and a["sent"] < b["sent"] for a, b in zip(points, points[1:]))


def test_reading_a_built_timeline_costs_no_database_query(teams, django_assert_num_queries):
    people = [factories.recipient() for _ in range(2)]
    campaign, deliveries = launched(people)
    delivery_send(delivery_id=deliveries[0].pk)
    progress.timeline(campaign.pk)  # built once from the rows
    delivery_send(delivery_id=deliveries[1].pk)

    with django_assert_num_queries(0):
        points = progress.timeline(campaign.pk)

    assert points[-1]["sent"] == 2


def test_the_timeline_is_rebuilt_from_the_rows_when_redis_lost_it(teams, redis_client, django_assert_num_queries):
    people = [factories.recipient() for _ in range(3)] + [factories.recipient(aad_object_id=None)]
    campaign, deliveries = launched(people)
    for delivery in deliveries[:3]:
        delivery_send(delivery_id=delivery.pk)
    earlier = timezone.now().replace(second=30, microsecond=0) - datetime.timedelta(minutes=5)
    Delivery.objects.filter(pk=deliveries[0].pk).update(finished_at=earlier)
    Delivery.objects.filter(pk=deliveries[3].pk).update(finished_at=earlier + datetime.timedelta(seconds=20))
    redis_client.delete(progress.timeline_key(campaign.pk))

    with django_assert_num_queries(1):
        points = progress.timeline(campaign.pk)

    first = int(earlier.timestamp()) - 30
    assert points[0] == {"minute": first, "sent": 1, "failed": 0, "skipped": 1}
    assert points[-1]["minute"] > first and (points[-1]["sent"], points[-1]["skipped"]) == (3, 1)
    assert redis_client.hget(progress.timeline_key(campaign.pk), "built") == b"1"
    assert redis_client.hget(progress.timeline_key(campaign.pk), f"{first}:skipped") == b"1"


def test_recording_never_fails_the_caller_when_redis_is_away(monkeypatch):
    away = redis.Redis(port=1, socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(progress, "client", lambda: away)
    campaign = factories.campaign()

    progress.record(campaign.pk, sent=1, start=True)  # no exception

    assert progress.timeline(campaign.pk) == []  # and reading falls back to the (empty) rows


def test_failures_are_grouped_by_teams_answer_with_what_they_mean(teams):
    blocked = [factories.recipient() for _ in range(2)]
    not_installed, teams_error, odd = factories.recipient(), factories.recipient(), factories.recipient()
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "name": "Blocker"} for p in blocked])
    for person in blocked:
        teams.client.block(str(person.aad_object_id))
    teams.client.config(auto_install=False)
    campaign, deliveries = launched([*blocked, not_installed, teams_error, odd])
    for delivery in deliveries[:3]:
        delivery_send(delivery_id=delivery.pk)
    teams.client.config(faults={"status_500": 1.0})
    delivery_send(delivery_id=deliveries[3].pk)
    # An answer Teams may give one day and Crier does not know yet.
    Delivery.objects.filter(pk=deliveries[4].pk).update(
        status="failed", error_code="TeapotException", error_message="I am a teapot", last_status_code=418
    )

    listed = reports.campaign_failure_reasons(campaign_id=campaign.pk)

    reasons = {r["error_code"]: r for r in listed}
    blocked_reason = listed[0]  # the most frequent first
    assert (blocked_reason["error_code"], blocked_reason["status_code"], blocked_reason["count"]) == (
        "ConversationBlockedByUser", 403, 2
    )
    assert blocked_reason["meaning"] == (
        "This person blocked the bot or uninstalled the app: they are recorded as opted out."
    )
    assert "not installed" in reasons["ForbiddenOperationException"]["meaning"]
    assert reasons["ServiceError"]["status_code"] == 500 and "internal error" in reasons["ServiceError"]["meaning"]
    teapot = reasons["TeapotException"]
    assert teapot["count"] == 1 and teapot["example_message"] == "I am a teapot"
    assert "418 TeapotException" in teapot["meaning"] and "I am a teapot" in teapot["meaning"]
    assert set(reasons) == {
        "ConversationBlockedByUser", "ForbiddenOperationException", "ServiceError", "TeapotException"
    }


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("MessageWritesBlocked", 403, "blocked the bot"),
        ("ConversationNotFound", 404, "chat with the bot is gone"),
        ("HTTP404", 404, "chat with the bot is gone"),
        ("Throttled", 429, "slow down"),
        ("Timeout", None, "did not answer in time"),
        ("BotNotRegistered", 401, "credentials"),
        ("invalid_client", 401, "credentials"),
        ("BadArgument", 400, "malformed"),
        ("MessageSizeTooBig", 413, "too large"),
        ("GatewayTimeout", 504, "unavailable or overloaded"),
        ("BotDisabledByAdmin", 403, "administrator has blocked"),
        ("crier_error", None, "error in Crier itself"),
        ("WorkerLost", None, "worker stopped"),
    ],
)
def test_each_known_failure_has_a_plain_explanation_and_something_to_do(code, status, expected):
    explanation = reports.failure_explain(code=code, status=status)

    assert expected in explanation.meaning
    assert explanation.action


def test_skips_are_grouped_by_reason_with_what_they_mean():
    factories.recipient()
    factories.recipient(aad_object_id=None)
    opted_out = [factories.recipient() for _ in range(2)]
    campaign = factories.campaign()
    for person in opted_out:
        OptOut.objects.create(recipient=person, category=campaign.category, source=OptOut.Source.API)
    services.campaign_launch(campaign_id=campaign.pk)

    reasons = reports.campaign_skip_reasons(campaign_id=campaign.pk)

    assert [(r["skip_reason"], r["count"]) for r in reasons] == [("opted_out", 2), ("no_teams_identity", 1)]
    assert reasons[0]["label"] == "Opted out" and "opted out" in reasons[0]["meaning"]
    assert "Entra object id" in reasons[1]["meaning"]


def test_watching_an_unchanged_campaign_costs_no_database_query(teams, django_assert_num_queries):
    people = [factories.recipient(), factories.recipient(aad_object_id=None)]
    teams.client.config(auto_install=False)
    campaign, deliveries = launched(people)
    delivery_send(delivery_id=deliveries[0].pk)
    campaign.refresh_from_db()
    first = reports.campaign_watch(campaign=campaign)

    with django_assert_num_queries(0):
        again = reports.campaign_watch(campaign=campaign)

    assert again["failure_reasons"] == first["failure_reasons"] and len(first["failure_reasons"]) == 1
    assert [r["count"] for r in again["skip_reasons"]] == [1]


def test_the_reasons_are_read_again_once_the_counts_move(teams):
    people = [factories.recipient() for _ in range(2)]
    teams.client.config(auto_install=False)
    campaign, deliveries = launched(people)
    delivery_send(delivery_id=deliveries[0].pk)
    campaign.refresh_from_db()
    assert [r["count"] for r in reports.campaign_watch(campaign=campaign)["failure_reasons"]] == [1]

    delivery_send(delivery_id=deliveries[1].pk)
    current = reports.campaign_watch(campaign=campaign)

    assert [r["count"] for r in current["failure_reasons"]] == [2]
    assert (current["done"], current["percent"], current["progress"]["failed"]) == (2, 100.0, 2)


def test_the_share_done_is_rounded_down_so_100_percent_means_everyone():
    campaign = factories.campaign(status="running", launched_at=timezone.now(), total_deliveries=1000)
    progress.record(campaign.pk, sent=999, start=True)

    assert reports.campaign_watch(campaign=campaign)["percent"] == 99.9


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(None, "not known yet"), (0, "none"), (42, "less than a minute"), (150, "about 2 min"), (7800, "about 2 h 10 min")],
)
def test_time_left_is_said_as_a_person_says_it(seconds, words):
    assert reports.duration_words(seconds) == words
