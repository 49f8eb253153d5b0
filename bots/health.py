"""Liveness and readiness.

Liveness (``/livez``) says the web process answers; it touches nothing, so an orchestrator restarts a
process only when the process itself is stuck. Readiness (``/readyz``, and ``/healthz`` for the probes
that already use it) says the process can serve: it asks PostgreSQL and Redis, each with a short timeout,
and names the one that is down; its answer is kept for READINESS_CACHE_SECONDS."""

from __future__ import annotations

import threading
import time

import psycopg
import redis
from django.conf import settings
from django.db import connections

# libpq rounds a connect timeout below 2 seconds up to 2.
_MIN_PG_CONNECT_TIMEOUT = 2
READINESS_CACHE_SECONDS = 2.0


def database_check(*, alias: str = "default", timeout: float) -> str | None:
    """None when PostgreSQL answers ``SELECT 1`` within the timeout, else why not. A connection of its own,
    so a stale pooled connection neither hides an outage nor hangs the probe."""
    params = connections[alias].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["connect_timeout"] = max(_MIN_PG_CONNECT_TIMEOUT, round(timeout))
    params["options"] = f"{params.get('options', '')} -c statement_timeout={int(timeout * 1000)}".strip()
    try:
        with psycopg.connect(**params) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except psycopg.Error as exc:
        return exc.__class__.__name__
    return None


def redis_check(*, url: str, timeout: float) -> str | None:
    """None when Redis answers PING within the timeout, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return exc.__class__.__name__
    finally:
        client.close()
    return None


_checked: dict[tuple, tuple[float, dict[str, str]]] = {}
_checking = threading.Lock()


def readiness(*, timeout: float) -> dict[str, str]:
    """Each dependency the web process needs, "ok" or why it is down. Asked at most once every
    READINESS_CACHE_SECONDS per process: the probe needs no login, and each asking opens connections."""
    database = connections["default"].settings_dict
    key = (settings.REDIS_URL, database.get("HOST"), database.get("PORT"), database.get("NAME"))
    with _checking:  # one asks; probes arriving meanwhile wait for its answer
        checked = _checked.get(key)
        if checked is not None and time.monotonic() - checked[0] < READINESS_CACHE_SECONDS:
            return checked[1]
        problems = {
            "postgresql": database_check(timeout=timeout),
            "redis": redis_check(url=settings.REDIS_URL, timeout=timeout),
        }
        answer = {name: problem or "ok" for name, problem in problems.items()}
        _checked.clear()
        _checked[key] = (time.monotonic(), answer)
        return answer
