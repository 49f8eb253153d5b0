"""One Redis client per URL and process, shared by the pacer, the progress counters and the feeder."""

from __future__ import annotations

import uuid
from functools import lru_cache

import redis


@lru_cache(maxsize=8)
def redis_for(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and reconnects in the child, so prefork workers are safe.
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def redis_clock(client: redis.Redis) -> float:
    """Now, in seconds, on Redis's clock (``TIME``): the one every machine sharing it agrees on."""
    seconds, micros = client.time()
    return seconds + micros / 1e6


def lock_acquire(client: redis.Redis, name: str, ttl_seconds: float) -> str | None:
    """A lock across processes: a token if this caller got it, else None. Size the TTL to outlast
    the work it guards."""
    token = uuid.uuid4().hex
    return token if client.set(name, token, nx=True, px=int(ttl_seconds * 1000)) else None


def lock_release(client: redis.Redis, name: str, token: str) -> None:
    """Releases the lock only if it is still this caller's (it may have expired and been taken)."""
    client.eval(_RELEASE, 1, name, token)
