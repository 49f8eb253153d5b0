"""PostgreSQL's advisory locks, for work one process at a time must do (listing a group's members, writing a
campaign's rows): held by the connection, so a process that dies lets go of it with its connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


@contextmanager
def advisory_lock(key: int, key2: int) -> Iterator[bool]:
    """Tries the lock ``(key, key2)`` without waiting; yields whether this connection got it, and lets it go after."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [key, key2])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [key, key2])
            except DatabaseError:  # the connection is gone, and the lock with it
                logger.warning("could not release the advisory lock (%s, %s)", key, key2)


def advisory_lock_held(key: int, key2: int) -> bool:
    """Whether some connection holds the lock ``(key, key2)`` now."""
    with advisory_lock(key, key2) as got:
        return not got
