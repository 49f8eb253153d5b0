"""Test slots: several runs of the suite at once on one machine, each on databases of its own.

`make mutation` tests mutants side by side (CRIER_TEST_SLOTS=N): each run takes the first free slot,
held with a file lock until the run ends, and slot k > 0 moves the run to the test database with the
suffix ``_slot<k>`` and to the Redis database k numbers after REDIS_URL's (tests/conftest.py, test_slot).
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit


def take_slot(slots: int, tag: str, directory: Path) -> tuple[int, IO[str]] | None:
    """The first free slot of ``slots`` and its open lock file (closing it frees the slot), or None."""
    for slot in range(slots):
        lock = open(directory / f"crier-test-slot-{tag}-{slot}.lock", "w")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return slot, lock
    return None


def redis_url_for(url: str, slot: int) -> str:
    """REDIS_URL moved ``slot`` databases on: slot 0 keeps it."""
    if not slot:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + slot}"))
