"""One Redis client per URL and process, shared by the pacer, the progress counters and the feeder."""

from __future__ import annotations

from functools import lru_cache

import redis


@lru_cache(maxsize=8)
def redis_for(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects in the child, so prefork workers are safe.
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
