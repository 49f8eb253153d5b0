"""Work in another thread with its own database connection, for tests of what happens at the same moment."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from django.db import connection


def in_thread(work) -> tuple[threading.Thread, dict]:
    """Starts ``work()`` in a thread; the dict gets its "result" or the "error" it raised."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - reported by the assertions
            outcome["error"] = error
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def waits_for_a_lock(pid: int) -> bool:
    """Whether the database session ``pid`` is waiting for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def until_waiting_or_done(done, pids: list[int], what: str, seconds: float = 30.0) -> None:
    """Waits until ``done()`` or the session whose pid ``pids`` holds waits for a lock."""
    deadline = time.monotonic() + seconds
    while not done() and not (pids and waits_for_a_lock(pids[0])):
        assert time.monotonic() < deadline, f"{what} neither waited nor finished"
        time.sleep(0.01)


@contextmanager
def row_locked(model, pk: int):
    """While the block runs, another connection holds the row ``pk`` of ``model`` FOR UPDATE, as an edit or a
    control of a campaign does for the length of its transaction."""
    from django.db import transaction

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            list(model.objects.select_for_update().filter(pk=pk))
            held.set()
            release.wait(30)

    thread, outcome = in_thread(hold)
    try:
        assert held.wait(30), outcome.get("error")
        yield
    finally:
        release.set()
        thread.join()
