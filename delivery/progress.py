"""Per-campaign progress that is cheap to read while a million-recipient campaign runs.

The number of delivery rows is a fact kept on the campaign row, written with each chunk of the
audience. What happened to them is counted in Redis (one hash per campaign, plus per-second buckets
for the rate), by the same code that moves the rows. PostgreSQL stays the truth: when the hash is
missing (a Redis restart) it is rebuilt from one GROUP BY, and again when the campaign completes.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count

from .connections import redis_for
from .models import Delivery

FINAL = tuple(str(status) for status in Delivery.FINAL)
COUNTERS = (*FINAL, "ambiguous")
RATE_WINDOW_SECONDS = 10


def client() -> redis.Redis:
    return redis_for(settings.REDIS_URL)


def key(campaign_id: int) -> str:
    return f"crier:progress:{campaign_id}"


def record(campaign_id: int, *, start: bool = False, **increments: int) -> None:
    """Adds to the campaign's counters (``sent=1``, ``skipped=5000``...); ``start`` marks them as
    complete from the launch on. Never fails the caller: counters are a view, rebuilt from the
    database whenever they are lost (a hash without the mark was recreated after a loss)."""
    try:
        pipe = client().pipeline(transaction=False)
        counters = key(campaign_id)
        for field, amount in increments.items():
            if amount:
                pipe.hincrby(counters, field, amount)
        if increments.get("sent"):
            bucket = f"crier:rate:{campaign_id}:{int(time.time())}"
            pipe.incrby(bucket, increments["sent"])
            pipe.expire(bucket, RATE_WINDOW_SECONDS * 3)
        if start:
            pipe.hsetnx(counters, "built", 1)
        pipe.expire(counters, 30 * 24 * 3600)
        pipe.execute()
    except redis.RedisError:
        pass


def rebuild(campaign_id: int) -> dict[str, int]:
    """Counts the rows (one GROUP BY) and replaces the counters with the result."""
    counts = dict.fromkeys(COUNTERS, 0)
    rows = Delivery.objects.filter(campaign_id=campaign_id, status__in=FINAL)
    for row in rows.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    counts["ambiguous"] = Delivery.objects.filter(campaign_id=campaign_id, ambiguous=True).count()
    try:
        pipe = client().pipeline()
        pipe.delete(key(campaign_id))
        pipe.hset(key(campaign_id), mapping={**counts, "built": 1})
        pipe.expire(key(campaign_id), 30 * 24 * 3600)
        pipe.execute()
    except redis.RedisError:
        pass
    return counts


def read(campaign: Any) -> dict[str, Any]:
    """Counts by end state, what is still to do, the rate over the last seconds and an estimate of
    the time left. One Redis round trip; a database count only when the counters were lost."""
    if campaign.launched_at is None:
        counts = dict.fromkeys(COUNTERS, 0)
        rates: list[Any] = []
    else:
        try:
            pipe = client().pipeline(transaction=False)
            pipe.hgetall(key(campaign.pk))
            now = int(time.time())
            pipe.mget([f"crier:rate:{campaign.pk}:{second}" for second in range(now - RATE_WINDOW_SECONDS + 1, now + 1)])
            raw, rates = pipe.execute()
        except redis.RedisError:
            raw, rates = {}, []
        values = {k.decode(): int(v) for k, v in raw.items()}
        # Missing, or recreated by an increment after a Redis restart: the rows know.
        counts = {name: values.get(name, 0) for name in COUNTERS} if "built" in values else rebuild(campaign.pk)
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
