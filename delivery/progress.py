"""Per-campaign progress that is cheap to read while a million-recipient campaign runs.

Counters live in Redis (one hash per campaign, plus per-second buckets for the rate), moved by
the same code that moves delivery rows. PostgreSQL stays the truth: when the hash is missing (a
Redis restart) it is rebuilt from one GROUP BY, and a finished campaign's counts come from there.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count

FINAL = ("sent", "failed", "skipped")
RATE_WINDOW_SECONDS = 10
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


def _key(campaign_id: int) -> str:
    return f"crier:progress:{campaign_id}"


def record(campaign_id: int, **increments: int) -> None:
    """Adds to the campaign's counters (``sent=1``, ``total=5000``...). Never fails the caller:
    counters are a view, rebuilt from the database whenever they are lost."""
    try:
        pipe = client().pipeline(transaction=False)
        key = _key(campaign_id)
        for field, amount in increments.items():
            if amount:
                pipe.hincrby(key, field, amount)
        if increments.get("sent"):
            bucket = f"crier:rate:{campaign_id}:{int(time.time())}"
            pipe.incrby(bucket, increments["sent"])
            pipe.expire(bucket, RATE_WINDOW_SECONDS * 3)
        pipe.expire(key, 30 * 24 * 3600)
        pipe.execute()
    except redis.RedisError:
        pass


def rebuild(campaign_id: int) -> dict[str, int]:
    from .models import Delivery

    counts = {status: 0 for status in Delivery.Status.values}
    for row in Delivery.objects.filter(campaign_id=campaign_id).values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    values = {
        "total": sum(counts.values()),
        **{status: counts[status] for status in FINAL},
        "ambiguous": Delivery.objects.filter(campaign_id=campaign_id, ambiguous=True).count(),
    }
    try:
        pipe = client().pipeline()
        pipe.delete(_key(campaign_id))
        pipe.hset(_key(campaign_id), mapping=values)
        pipe.expire(_key(campaign_id), 30 * 24 * 3600)
        pipe.execute()
    except redis.RedisError:
        pass
    return values




def read(campaign_id: int) -> dict[str, Any]:
    """Counts by end state, what is still to do, the rate over the last seconds and an estimate of
    the time left. One Redis round trip; a database count only when the counters were lost."""
    try:
        pipe = client().pipeline(transaction=False)
        pipe.hgetall(_key(campaign_id))
        now = int(time.time())
        buckets = [f"crier:rate:{campaign_id}:{second}" for second in range(now - RATE_WINDOW_SECONDS, now)]
        pipe.mget(buckets)
        raw, rates = pipe.execute()
    except redis.RedisError:
        raw, rates = {}, []
    if raw:
        values = {k.decode(): int(v) for k, v in raw.items()}
    else:
        values = rebuild(campaign_id)
    done = sum(values.get(status, 0) for status in FINAL)
    total = values.get("total", 0)
    rate = sum(int(r) for r in rates if r) / RATE_WINDOW_SECONDS if rates else 0.0
    remaining = max(0, total - done)
    return {
        "total": total,
        **{status: values.get(status, 0) for status in FINAL},
        "remaining": remaining,
        "ambiguous": values.get("ambiguous", 0),
        "rate_per_second": round(rate, 1),
        "eta_seconds": round(remaining / rate) if rate > 0 and remaining else (0 if not remaining else None),
    }
