"""A task of which one runs at a time across every worker (an advisory lock): the installer
(``delivery.installing``) and the notifier (``delivery.notifying``), each with its own pace to keep.

Whoever has work for it wakes it, at most once every few seconds (a Redis key with a lifetime, cleared by the
task when it has nothing left); the reconciler starts one when work waits and none runs; and when its time is up
with work left, it hands on to the next task, which waits for the lock to be let go rather than a fixed second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from core.locks import advisory_lock, advisory_lock_held

from . import progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OneAtATime:
    lock: int  # the advisory lock's first key (the second is 0)
    wake_key: str
    wake_seconds: int
    start: Callable[..., None]  # queues the task; ``patience`` (seconds) for the one before it to let go
    waiting: Callable[[], bool]  # whether work is due
    hand_on_patience: float = 5.0

    def wake(self) -> None:
        """Starts the task, unless it was started in the last ``wake_seconds`` (it takes all the work due). Never
        raises: whoever wakes it has recorded its own work, which the reconciler's check finds."""
        try:
            if not progress.client().set(self.wake_key, 1, nx=True, ex=self.wake_seconds):
                return
        except redis.RedisError:
            pass  # wake it anyway
        try:
            self.start()
        except Exception:  # noqa: BLE001 - the broker away: the reconciler starts one when work waits and none runs
            logger.exception("queuing the task woken by %s raised", self.wake_key)

    def wake_clear(self) -> None:
        """Nothing left: work due from now on wakes another task."""
        try:
            progress.client().delete(self.wake_key)
        except redis.RedisError:
            pass

    def check(self) -> bool:
        """For the reconciler: starts the task when work is due and none runs."""
        if advisory_lock_held(self.lock, 0) or not self.waiting():
            return False
        self.start()
        return True

    def run(self, work: Callable[[], int], *, patience: float = 0.0) -> int:
        """Does ``work`` under the lock and returns what it took; 0 when another task holds the lock past
        ``patience`` seconds (it takes this work too). Hands on to the next task when work is left."""
        deadline = time.monotonic() + patience
        while True:
            with advisory_lock(self.lock, 0) as held:
                if held:
                    taken = work()
                    handing_on = self.waiting()
            if held:
                break
            if time.monotonic() >= deadline:
                return 0
            time.sleep(0.05)
        if handing_on:
            self.start(patience=self.hand_on_patience)
        return taken
