"""The baseline of benchmark A: the cheapest task Celery can run, recording when it ran."""

import time

import redis
from celery import shared_task
from django.conf import settings

_client = None


@shared_task(ignore_result=True)
def noop(n: int) -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL)
    now = time.time()
    pipe = _client.pipeline(transaction=False)
    pipe.setnx("bench:first", now)
    pipe.set("bench:last", now)
    pipe.incr("bench:done")
    pipe.execute()
