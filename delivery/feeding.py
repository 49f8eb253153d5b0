"""Feeding the deliveries queue from the database, so that its depth stays bounded (a queued Celery
message costs about 1 KB of Redis) while workers never starve, whatever the audience's size.

Each running campaign has a cursor (the highest delivery id handed to the queue, in Redis; lost
cursors start again from zero, which is harmless since a delivery is claimed before it is sent).
A tick, from beat every second and right after a launch, tops the queue up, sharing the room between
the running campaigns so a small campaign is never stuck behind a large one.

How deep: as many messages as the workers take in ``FEED_AHEAD_SECONDS`` (measured between ticks),
at least ``FEED_LOW_WATER`` and at most ``FEED_HIGH_WATER``. At Teams' pace (50 calls a second) that
is a few hundred, so a campaign launched while another runs does not wait behind thousands of the
other's messages; unthrottled, the queue deepens to the bound.
A queue that ran dry doubles its depth at once.
"""

from __future__ import annotations

import base64
import json
import math
import uuid

import redis
from django.conf import settings

from campaigns.models import Campaign

from .connections import lock_acquire, lock_release, redis_clock, redis_for
from .models import Delivery
from .settled import settled_below

QUEUE = "deliveries"
# Direct messages (transactional notices, test sends) and welcomes: workers take from this queue in
# turn with the others, so they never wait behind a large campaign's queued tasks.
DIRECT_QUEUE = "direct"
DELIVER_TASK = "delivery.tasks.deliver"
LOCK_KEY = "crier:feeder:lock"
DRAIN_KEY = "crier:feed:drain"  # the last tick's time, the depth it left and its target


def broker() -> redis.Redis:
    return redis_for(settings.CELERY_BROKER_URL)


def cursor_key(campaign_id: int) -> str:
    return f"crier:feed:{campaign_id}"


def publish(delivery_ids: list[int], *, task: str = DELIVER_TASK, queue: str = QUEUE) -> None:
    """Queues one ``deliver`` task (or ``task``) per id through one Redis pipeline.

    ``apply_async`` costs about 0.5 ms a message here, a tenth of a core at full speed; this writes
    the same message (headers built by Celery itself, once per batch) in the format Celery's Redis
    transport reads, at tens of thousands a second."""
    from .tasks import deliver

    if not delivery_ids:
        return
    headers, properties, body, _ = deliver.app.amqp.as_task_v2("template", task, args=(0,), kwargs={}, ignore_result=True)
    embed = body[2]
    pipe = broker().pipeline(transaction=False)
    for delivery_id in delivery_ids:
        task_id = str(uuid.uuid4())
        message = {
            "body": base64.b64encode(json.dumps([[delivery_id], {}, embed]).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {**headers, "id": task_id, "root_id": task_id, "argsrepr": f"({delivery_id},)"},
            "properties": {
                **{k: v for k, v in properties.items() if k != "reply_to"},
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        pipe.lpush(queue, json.dumps(message))
    pipe.execute()


def queue_depth() -> int:
    return int(broker().llen(QUEUE))


def target_depth(client: redis.Redis, depth: int, now: float) -> int:
    """How deep the queue should be now, from how fast the workers took messages since the last tick."""
    low, high = min(settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER), settings.FEED_HIGH_WATER
    last = client.hmget(DRAIN_KEY, "at", "depth", "target")
    if last[0] is None:
        return low
    at, left, target = float(last[0]), int(last[1]), int(last[2])
    elapsed = now - at
    if elapsed <= 0 or elapsed > 60:
        return low  # an idle spell says nothing of the workers' speed
    wanted = (left - depth) / elapsed * settings.FEED_AHEAD_SECONDS
    if depth == 0 and left > 0:
        wanted = max(wanted, 2 * target)  # ran dry: the workers could take more than they were given
    return max(low, min(high, math.ceil(wanted)))


def nearly_empty() -> bool:
    """Fewer messages queued than a quarter of the feeder's last target: queued messages may have
    been lost (the reconciler then looks for rows left behind the feeder's cursors)."""
    client = broker()
    target = client.hget(DRAIN_KEY, "target")
    return queue_depth() < (int(target) if target else settings.FEED_HIGH_WATER) // 4


def feed() -> int:
    """One tick: returns how many deliveries it queued."""
    client = broker()
    token = lock_acquire(client, LOCK_KEY, ttl_seconds=30)
    if token is None:
        return 0  # another tick is feeding
    try:
        now, depth = redis_clock(client), queue_depth()
        target = target_depth(client, depth, now)
        room = target - depth
        if room < target // 4:
            _remember(client, now, depth, target)
            return 0
        campaigns = {
            campaign_id: (kind, mark)
            for campaign_id, kind, mark in Campaign.objects.filter(
                status=Campaign.Status.RUNNING, kind__in=Campaign.FED_KINDS
            )
            .order_by("launched_at", "id")
            .values_list("id", "kind", "settled_below")
        }
        running = list(campaigns)
        queued = 0
        while running and room > 0:
            share = max(100, room // len(running))
            still_pending = []
            for campaign_id in running:
                limit = min(share, room)
                kind, mark = campaigns[campaign_id]
                ids = _next_batch(client, campaign_id, limit, mark)
                if ids:
                    publish(ids, queue=DIRECT_QUEUE if kind == Campaign.Kind.DIRECT else QUEUE)
                    client.set(cursor_key(campaign_id), ids[-1], ex=7 * 24 * 3600)
                    queued += len(ids)
                    room -= len(ids)
                    if len(ids) == limit:
                        still_pending.append(campaign_id)
                if room <= 0:
                    break
            running = still_pending
        _remember(client, now, depth + queued, target)
        return queued
    finally:
        lock_release(client, LOCK_KEY, token)


def _remember(client: redis.Redis, now: float, depth: int, target: int) -> None:
    client.hset(DRAIN_KEY, mapping={"at": now, "depth": depth, "target": target})
    client.expire(DRAIN_KEY, 3600)


def _next_batch(client: redis.Redis, campaign_id: int, limit: int, mark: int) -> list[int]:
    """The next pending rows after the cursor (after a rewind, from where unfinished rows begin,
    ``mark``), through the primary key: a campaign's ids are one range (delivery.models)."""
    cursor = max(int(client.get(cursor_key(campaign_id)) or 0), settled_below(campaign_id, mark) - 1)
    return list(
        Delivery.objects.of_campaign(campaign_id)
        .filter(status=Delivery.Status.PENDING, id__gt=cursor)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def rewind(campaign_id: int) -> None:
    """Feed the campaign's pending deliveries again from the start (after a pause, or when queued
    messages were lost)."""
    broker().delete(cursor_key(campaign_id))
