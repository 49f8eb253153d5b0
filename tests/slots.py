"""Test slots: several runs of the suite at once on one machine, each on databases of its own.

`make mutation` tests mutants side by side (CRIER_TEST_SLOTS=N): each run takes the first free slot,
held with a file lock until the run ends, and slot k > 0 moves the run to the test database with the
suffix ``_slot<k>`` and to the Redis database k numbers after REDIS_URL's (tests/conftest.py, test_slot).
A run may start in a process forked from one that already talked to Redis (mutmut forks one per
mutant), so the clients made before the move are dropped, not only the settings changed.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

# A run that finds every slot taken for this long stops with this status, which mutmut and
# scripts/mutation.py count as "suspicious" (never as a killed mutant).
WAIT_SECONDS = 60.0
NO_SLOT_STATUS = 35


def take_slot(slots: int, tag: str, directory: Path, wait: float = 0.0) -> tuple[int, IO[str]] | None:
    """The first free slot of ``slots`` and its open lock file (closing it frees the slot), waiting
    up to ``wait`` seconds for one; None if none came free."""
    deadline = time.monotonic() + wait
    while True:
        for slot in range(slots):
            lock = open(directory / f"crier-test-slot-{tag}-{slot}.lock", "w")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            return slot, lock
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def redis_url_for(url: str, slot: int) -> str:
    """REDIS_URL moved ``slot`` databases on: slot 0 keeps it."""
    if not slot:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + slot}"))


def use_slot(slot: int) -> Callable[[], None]:
    """Moves this process's Django settings, Celery app and Django cache to the slot's databases;
    returns what puts them back. Slot 0 changes nothing."""
    from django.conf import settings
    from django.core.cache import caches

    from settings.celery import app

    database = settings.DATABASES["default"]
    before = (dict(database.get("TEST", {})), settings.REDIS_URL, settings.CELERY_BROKER_URL,
              settings.CACHES["default"]["LOCATION"], app.conf.broker_url)

    def drop_clients() -> None:
        # Celery's connection and producer pools, and Django's cache client, keep the URL they were made
        # with; Celery finds the pool of the URL now set (kombu keeps one per URL, and redis-py drops the
        # connections a forked process inherited).
        app._pool = None
        app.amqp._producer_pool = None
        # The pacer's Lua scripts are registered on the first client it used.
        from bots.pacing import pacer

        pacer._acquire = pacer._admit = pacer._throttled = None
        for alias in list(settings.CACHES):
            try:
                del caches[alias]
            except AttributeError:  # not made in this thread
                pass

    def restore() -> None:
        database["TEST"], settings.REDIS_URL, settings.CELERY_BROKER_URL = before[:3]
        settings.CACHES["default"]["LOCATION"], app.conf.broker_url = before[3:]
        drop_clients()

    if slot:
        url = redis_url_for(settings.REDIS_URL, slot)
        test_name = database.get("TEST", {}).get("NAME") or f"test_{database['NAME']}"
        database.setdefault("TEST", {})["NAME"] = f"{test_name}_slot{slot}"
        settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CACHES["default"]["LOCATION"] = url
        app.conf.broker_url = url
        drop_clients()
    return restore
