"""Per-campaign progress that is cheap to read while a million-recipient campaign runs.

The number of delivery rows is a fact kept on the campaign row, written with each chunk of the
audience. What happened to them is counted in Redis (one hash per campaign, plus per-second buckets
for the rate, plus per-minute buckets for the states over time), by the same code that moves the
rows. PostgreSQL stays the truth: when a hash is missing (a Redis restart) it is rebuilt from one
GROUP BY, and the counters again when the campaign completes.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.db.models.functions import TruncMinute

from core.connections import redis_for

from .models import Delivery, Reaction, campaign_ids

FINAL = tuple(str(status) for status in Delivery.FINAL)
# installed: people Crier installed the app for; notified, notice_failed: urgent campaigns' pop-ups (delivery.notifying)
# read: messages Teams reported read (delivery.reads), a lower bound; acknowledged: of the message as it is now
# (delivery.acknowledgements); answered: people who answered its poll (delivery.polls); clicked: people who opened a
# link button (delivery.clicks)
COUNTERS = (*FINAL, "ambiguous", "installed", "notified", "notice_failed", "read", "acknowledged", "answered",
            "clicked")
REACTION = "reaction:"  # and a counter for each kind of reaction: reaction:like, reaction:heart… (delivery.reads)
POLL = "poll:"  # and one for each option of a poll, by its place: poll:0, poll:1… (delivery.polls)
CLICK = "click:"  # and one for each link button, by its place: the people who opened it (delivery.clicks)
RATE_WINDOW_SECONDS = 10
KEEP_SECONDS = 30 * 24 * 3600
# A chart needs no more points than this; a welcome campaign that runs for months is sampled down.
TIMELINE_MAX_POINTS = 1440


def client() -> redis.Redis:
    return redis_for(settings.REDIS_URL)


def key(campaign_id: int) -> str:
    return f"crier:progress:{campaign_id}"


def timeline_key(campaign_id: int) -> str:
    return f"crier:timeline:{campaign_id}"


def rate_key(campaign_id: int, second: int) -> str:
    """Messages the campaign sent in that second."""
    return f"crier:rate:{campaign_id}:{second}"


def ended_key(second: int) -> str:
    """Deliveries of every campaign that ended sent or failed in that second: the workers' pace."""
    return f"crier:ended:{second}"


def record(campaign_id: int, *, start: bool = False, **increments: int) -> None:
    """Adds to the campaign's counters (``sent=1``, ``skipped=5000``...) and to this minute's
    bucket of each end state; ``start`` marks both as complete from the launch on. One pipelined
    round trip. Never fails the caller: counters are a view, rebuilt from the database whenever they
    are lost (a hash without the mark was recreated after a loss)."""
    try:
        now = int(time.time())
        pipe = client().pipeline(transaction=False)
        counters, timeline = key(campaign_id), timeline_key(campaign_id)
        timed = start
        for field, amount in increments.items():
            if amount:
                pipe.hincrby(counters, field, amount)
                if field in FINAL:
                    pipe.hincrby(timeline, f"{now - now % 60}:{field}", amount)
                    timed = True
        if increments.get("sent"):
            pipe.incrby(rate_key(campaign_id, now), increments["sent"])
            pipe.expire(rate_key(campaign_id, now), RATE_WINDOW_SECONDS * 3)
        if ended := increments.get("sent", 0) + increments.get("failed", 0):
            pipe.incrby(ended_key(now), ended)
            pipe.expire(ended_key(now), RATE_WINDOW_SECONDS * 3)
        if start:
            pipe.hsetnx(counters, "built", 1)
            pipe.hsetnx(timeline, "built", 1)
        pipe.expire(counters, KEEP_SECONDS)
        if timed:
            pipe.expire(timeline, KEEP_SECONDS)
        pipe.execute()
    except redis.RedisError:
        pass


def forget(campaign_id: int) -> None:
    """Drops the campaign's counters and timeline, before its rows are written at its launch: what Redis holds for
    its id then belongs to another database's campaign of that id (a database made afresh, or restored, while Redis
    kept running), or to an earlier launch that wrote nothing. They are rebuilt from the rows when read."""
    try:
        client().delete(key(campaign_id), timeline_key(campaign_id))
    except redis.RedisError:
        pass


def ended_per_second(seconds: int = 3) -> float:
    """Deliveries ended (sent or failed) per second by every campaign together, over the last
    ``seconds`` whole seconds."""
    now = int(time.time())
    try:
        counts = client().mget([ended_key(second) for second in range(now - seconds, now)])
    except redis.RedisError:
        return 0.0
    return sum(int(count) for count in counts if count) / seconds


def rebuild(campaign_id: int) -> dict[str, Any]:
    """Counts the rows (one GROUP BY) and replaces the counters with the result."""
    counts = dict.fromkeys(COUNTERS, 0)
    rows = Delivery.objects.of_campaign(campaign_id).filter(status__in=FINAL)
    for row in rows.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    counts["ambiguous"] = Delivery.objects.of_campaign(campaign_id).filter(ambiguous=True).count()
    counts["installed"] = Delivery.objects.of_campaign(campaign_id).filter(install=Delivery.Install.INSTALLED).count()
    counts["read"] = Delivery.objects.of_campaign(campaign_id).filter(read_at__isnull=False).count()
    counts["acknowledged"] = Delivery.objects.of_campaign(campaign_id).filter(acknowledged_at__isnull=False).count()
    notices = Delivery.objects.of_campaign(campaign_id).filter(notice__in=(
        Delivery.Notice.NOTIFIED, Delivery.Notice.UNANSWERED, Delivery.Notice.FAILED))
    for row in notices.values("notice").annotate(n=Count("id")).order_by():  # a call whose answer was lost went out
        counts["notice_failed" if row["notice"] == Delivery.Notice.FAILED else "notified"] += row["n"]
    reactions = reactions_from_rows(campaign_id)
    counts["answered"], poll = poll_counts_from_rows(campaign_id)
    counts["clicked"], clicks = click_counts_from_rows(campaign_id)
    try:
        pipe = client().pipeline()
        pipe.delete(key(campaign_id))
        pipe.hset(key(campaign_id), mapping={**counts, **{REACTION + kind: n for kind, n in reactions.items()},
                                             **{f"{POLL}{n}": count for n, count in poll.items()},
                                             **{f"{CLICK}{n}": count for n, count in clicks.items()}, "built": 1})
        pipe.expire(key(campaign_id), KEEP_SECONDS)
        pipe.execute()
    except redis.RedisError:
        pass
    return {**counts, "reactions": reactions, "poll": poll, "clicks": clicks}


def poll_counts_from_rows(campaign_id: int) -> tuple[int, dict[int, int]]:
    """How many people answered the campaign's poll, and how many chose each option (by place), counted from the
    rows: one range of the primary key."""
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM delivery_pollanswer WHERE delivery_id >= %s AND delivery_id < %s",
                       [lowest, end])
        answered = cursor.fetchone()[0]
        cursor.execute("SELECT choice, count(*) FROM delivery_pollanswer, unnest(choices) AS choice "
                       "WHERE delivery_id >= %s AND delivery_id < %s GROUP BY choice", [lowest, end])
        return answered, dict(cursor.fetchall())


def click_counts_from_rows(campaign_id: int) -> tuple[int, dict[int, int]]:
    """How many people opened any of the campaign's link buttons, and each, counted from the rows."""
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT delivery_id) FROM delivery_click WHERE delivery_id >= %s "
                       "AND delivery_id < %s", [lowest, end])
        clicked = cursor.fetchone()[0]
        cursor.execute("SELECT link, count(*) FROM delivery_click WHERE delivery_id >= %s AND delivery_id < %s "
                       "GROUP BY link", [lowest, end])
        return clicked, dict(cursor.fetchall())


def reactions_from_rows(campaign_id: int) -> dict[str, int]:
    """The campaign's reactions by kind, most first, counted from the rows: one range of their index."""
    lowest, end = campaign_ids(campaign_id)
    rows = Reaction.objects.filter(delivery_id__gte=lowest, delivery_id__lt=end)
    return _by_count({row["kind"]: row["n"] for row in rows.values("kind").annotate(n=Count("id")).order_by()})


def _by_count(reactions: dict[str, int]) -> dict[str, int]:
    return dict(sorted(((kind, n) for kind, n in reactions.items() if n > 0), key=lambda item: (-item[1], item[0])))


def timeline(campaign_id: int) -> list[dict[str, int]]:
    """The campaign's end states over time: one point per minute in which something ended, with
    the cumulative sent, failed and skipped at its end, oldest first. One Redis round trip; when the
    buckets were lost, one GROUP BY over the campaign's rows rebuilds them (one process at a time)."""
    try:
        conn = client()
        raw = conn.hgetall(timeline_key(campaign_id))
        if b"built" not in raw and conn.set(f"{timeline_key(campaign_id)}:rebuilding", 1, nx=True, ex=60):
            return _points(timeline_rebuild(campaign_id))
    except redis.RedisError:
        return _points(_timeline_from_rows(campaign_id))
    buckets: dict[int, dict[str, int]] = {}
    for field, value in raw.items():
        minute, _, state = field.decode().partition(":")
        if state in FINAL and minute.isdigit():
            buckets.setdefault(int(minute), {})[state] = int(value)
    return _points(buckets)


def timeline_rebuild(campaign_id: int) -> dict[int, dict[str, int]]:
    """Counts the rows by minute and end state (one GROUP BY, this campaign only) and replaces the
    buckets with the result."""
    buckets = _timeline_from_rows(campaign_id)
    fields = {f"{minute}:{state}": n for minute, states in buckets.items() for state, n in states.items()}
    try:
        pipe = client().pipeline()
        pipe.delete(timeline_key(campaign_id))
        pipe.hset(timeline_key(campaign_id), mapping={**fields, "built": 1})
        pipe.expire(timeline_key(campaign_id), KEEP_SECONDS)
        pipe.delete(f"{timeline_key(campaign_id)}:rebuilding")
        pipe.execute()
    except redis.RedisError:
        pass
    return buckets


def _timeline_from_rows(campaign_id: int) -> dict[int, dict[str, int]]:
    rows = (
        Delivery.objects.of_campaign(campaign_id).filter(status__in=FINAL, finished_at__isnull=False)
        .annotate(minute=TruncMinute("finished_at", tzinfo=datetime.timezone.utc))
        .values("minute", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    buckets: dict[int, dict[str, int]] = {}
    for row in rows:
        buckets.setdefault(int(row["minute"].timestamp()), {})[row["status"]] = row["n"]
    return buckets


def _points(buckets: dict[int, dict[str, int]]) -> list[dict[str, int]]:
    return cumulative_points(buckets, kinds=FINAL, key="minute", most=TIMELINE_MAX_POINTS)


def cumulative_points(buckets: dict[int, dict[str, int]], *, kinds, key: str, most: int) -> list[dict[str, int]]:
    """Counts by period (``{start: {kind: n}}``) as running totals, one point a period, oldest first: at most
    ``most`` points, evenly spaced and always ending with the latest (cumulative values stay exact where shown)."""
    totals = dict.fromkeys(kinds, 0)
    points = []
    for start in sorted(buckets):
        for kind, n in buckets[start].items():
            totals[kind] += n
        points.append({key: start, **totals})
    if len(points) > most:
        step = (len(points) - 1) / (most - 1)
        points = [points[round(i * step)] for i in range(most)]
    return points


def read(campaign: Any) -> dict[str, Any]:
    """Counts by end state, what is still to do, the rate over the last seconds and an estimate of
    the time left. One Redis round trip; a database count only when the counters were lost."""
    if campaign.launched_at is None:
        counts: dict[str, Any] = {**dict.fromkeys(COUNTERS, 0), "reactions": {}, "poll": {}, "clicks": {}}
        rates: list[Any] = []
    else:
        try:
            pipe = client().pipeline(transaction=False)
            pipe.hgetall(key(campaign.pk))
            now = int(time.time())
            pipe.mget([rate_key(campaign.pk, second) for second in range(now - RATE_WINDOW_SECONDS + 1, now + 1)])
            raw, rates = pipe.execute()
        except redis.RedisError:
            raw, rates = {}, []
        values = {k.decode(): int(v) for k, v in raw.items()}
        # Missing, or recreated by an increment after a Redis restart: the rows know.
        if "built" in values:
            counts = {name: values.get(name, 0) for name in COUNTERS}
            counts["reactions"] = _by_count({name[len(REACTION):]: n for name, n in values.items()
                                             if name.startswith(REACTION)})
            counts["poll"] = {int(name[len(POLL):]): n for name, n in values.items()
                              if name.startswith(POLL) and name[len(POLL):].isdigit()}
            counts["clicks"] = {int(name[len(CLICK):]): n for name, n in values.items()
                                if name.startswith(CLICK) and name[len(CLICK):].isdigit()}
        else:
            counts = rebuild(campaign.pk)
    total = campaign.total_deliveries
    remaining = max(0, total - sum(counts[status] for status in FINAL))
    # Over the last ten seconds, or since the launch if that is sooner.
    window = RATE_WINDOW_SECONDS
    if campaign.launched_at is not None:
        window = min(window, max(1.0, time.time() - campaign.launched_at.timestamp()))
    rate = sum(int(r) for r in rates if r) / window
    return {
        "total": total,
        **counts,
        "remaining": remaining,
        "rate_per_second": round(rate, 1),
        "eta_seconds": (round(remaining / rate) if rate > 0 else None) if remaining else 0,
    }
