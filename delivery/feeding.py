"""Feeding the deliveries queue from the database, so that its depth stays bounded (a queued Celery
message costs about 1 KB of Redis) while workers never starve, whatever the audience's size.

Each running campaign has a cursor (the highest delivery id handed to the queue, in Redis; lost
cursors start again from zero, which is harmless since a delivery is claimed before it is sent).
A tick, from beat every second and right after a launch, tops the queue up, sharing the room between
the running campaigns so a small campaign is never stuck behind a large one.

How deep, counting the ``direct`` queue too: as many messages as the workers end (send, or fail for
good) in ``FEED_AHEAD_SECONDS`` at the rate of the last seconds, at least ``FEED_LOW_WATER`` and at
most ``FEED_HIGH_WATER``. At Teams' pace (50 calls a second) that is a few hundred, so a campaign
launched while another runs does not wait behind thousands of the other's messages; unthrottled, the
queue deepens to the bound within seconds (each tick can give the workers three seconds of what they
managed in one).
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import dataclass

import redis
from celery import current_app
from django.conf import settings

from campaigns.models import Campaign
from core.connections import lock_acquire, lock_release, redis_clock, redis_for

from . import progress
from .models import Delivery
from .settled import settled_below

QUEUE = "deliveries"
# Direct messages (transactional notices, test sends) and welcomes: workers take from this queue in
# turn with the others, so they never wait behind a large campaign's queued tasks.
DIRECT_QUEUE = "direct"
DELIVER_TASK = "delivery.tasks.deliver"
LOCK_KEY = "crier:feeder:lock"
KEEP_SECONDS = 7 * 24 * 3600  # a campaign's cursor outlives any pause


def broker() -> redis.Redis:
    return redis_for(settings.CELERY_BROKER_URL)


def cursor_key(campaign_id: int) -> str:
    return f"crier:feed:{campaign_id}"


def check_key(campaign_id: int) -> str:
    """The reconciler's last look for lost rows: up to which id none was pending (``clean``), and
    up to which id, when, it queued rows again (``requeued``, ``at``)."""
    return f"crier:feed:{campaign_id}:check"


def fed_key(campaign_id: int) -> str:
    """The cursor after each tick that fed the campaign, scored by the tick's time: the reconciler
    tells a message lost from one still waiting in the queue by how long ago its row was fed."""
    return f"crier:feed:{campaign_id}:fed"


def publish(delivery_ids: list[int], *, task: str = DELIVER_TASK, queue: str = QUEUE) -> None:
    """Queues one ``deliver`` task (or ``task``) per id through one Redis pipeline.

    ``apply_async`` costs about 0.5 ms a message here, a tenth of a core at full speed; this writes
    the same message (headers built by Celery itself, once per batch) in the format Celery's Redis
    transport reads, at tens of thousands a second."""
    if not delivery_ids:
        return
    headers, properties, body, _ = current_app.amqp.as_task_v2("template", task, args=(0,), kwargs={}, ignore_result=True)
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
    """Messages waiting in both queues the feeder fills."""
    pipe = broker().pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.llen(DIRECT_QUEUE)
    return sum(pipe.execute())


def target_depth() -> int:
    """How deep the queue should be: ``FEED_AHEAD_SECONDS`` of what the workers end (send or fail
    for good) at the rate of the last seconds, within the bounds. The queue's own drain is no measure:
    a worker starting up takes its prefetch in one gulp."""
    low, high = min(settings.FEED_LOW_WATER, settings.FEED_HIGH_WATER), settings.FEED_HIGH_WATER
    return max(low, min(high, math.ceil(progress.ended_per_second() * settings.FEED_AHEAD_SECONDS)))


def queue_for(kind: str) -> str:
    """Direct messages and welcomes never wait behind a campaign's messages."""
    return DIRECT_QUEUE if kind in (Campaign.Kind.DIRECT, Campaign.Kind.WELCOME) else QUEUE


def fed_before(campaign_id: int, moment: float) -> int:
    """The campaign's cursor as it stood at ``moment`` (Redis's clock): every pending row up to it
    was queued by then. 0 if nothing is known from that far back."""
    found = broker().zrevrangebyscore(fed_key(campaign_id), moment, "-inf", start=0, num=1)
    return int(found[0]) if found else 0


def feed() -> int:
    """One tick: returns how many deliveries it queued."""
    client = broker()
    token = lock_acquire(client, LOCK_KEY, ttl_seconds=30)
    if token is None:
        return 0  # another tick is feeding
    try:
        now, depth = redis_clock(client), queue_depth()
        target = target_depth()
        room = target - depth
        if room < target // 4:
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
        turn = int(now) % len(running) if running else 0
        running = running[turn:] + running[:turn]  # when the room is tiny, not always the same ones first
        queued = 0
        while running and room > 0:
            share = math.ceil(room / len(running))  # an even split, however little room there is
            still_pending = []
            for campaign_id in running:
                limit = min(share, room)
                kind, mark = campaigns[campaign_id]
                ids = _next_batch(client, campaign_id, limit, mark)
                if ids:
                    publish(ids, queue=queue_for(kind))
                    _advance(client, campaign_id, ids[-1], now)
                    queued += len(ids)
                    room -= len(ids)
                    if len(ids) == limit:
                        still_pending.append(campaign_id)
                if room <= 0:
                    break
            running = still_pending
        return queued
    finally:
        lock_release(client, LOCK_KEY, token)


def _advance(client: redis.Redis, campaign_id: int, cursor: int, now: float) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.set(cursor_key(campaign_id), cursor, ex=KEEP_SECONDS)
    pipe.zadd(fed_key(campaign_id), {str(cursor): now})
    # Enough history for the reconciler, which looks RETRY_GRACE_SECONDS back.
    pipe.zremrangebyscore(fed_key(campaign_id), "-inf", now - 2 * settings.RETRY_GRACE_SECONDS - 60)
    pipe.expire(fed_key(campaign_id), KEEP_SECONDS)
    pipe.execute()


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


@dataclass(frozen=True)
class LostCheck:
    clean: int = 0
    requeued: int = 0
    at: float = 0.0


def lost_check(campaign_id: int) -> LostCheck:
    clean, requeued, at = broker().hmget(check_key(campaign_id), "clean", "requeued", "at")
    return LostCheck(int(clean or 0), int(requeued or 0), float(at or 0))


def lost_checked(campaign_id: int, check: LostCheck) -> None:
    pipe = broker().pipeline(transaction=False)
    pipe.hset(check_key(campaign_id), mapping={"clean": check.clean, "requeued": check.requeued, "at": check.at})
    pipe.expire(check_key(campaign_id), KEEP_SECONDS)
    pipe.execute()


def rewind(campaign_id: int) -> None:
    """Feed the campaign's pending deliveries again from the start (after a pause)."""
    broker().delete(cursor_key(campaign_id), fed_key(campaign_id), check_key(campaign_id))
