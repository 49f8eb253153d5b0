"""Teams' published rate limits as sliding windows, and the bookkeeping behind ``early_calls``.

A ``SlidingLimiter`` keeps, per scope (a conversation, a user, an app+tenant), the times of the calls it
accepted, and for each (limit, period) window answers either "go" or "wait this long". Only accepted
calls are remembered, so rejected calls never count toward a window.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Hashable

# Microsoft's numbers: (limit, period in seconds).
GLOBAL_WINDOWS: tuple[tuple[int, float], ...] = ((50, 1.0),)
THREAD_WINDOWS: tuple[tuple[int, float], ...] = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
CREATE_WINDOWS: tuple[tuple[int, float], ...] = THREAD_WINDOWS
# Microsoft Graph's Teams app installations: about 30 requests a second per app per tenant.
INSTALL_WINDOWS: tuple[tuple[int, float], ...] = ((30, 1.0),)

PRUNE_EVERY = 50_000  # calls between sweeps that drop scopes whose windows are all empty


class SlidingLimiter:
    """Several sliding windows shared by every scope of one kind.

    Each scope keeps the times of its accepted calls in an ``array('d')`` (about 70 bytes for a scope
    with one call, which matters with a million conversations), oldest first."""

    def __init__(self, windows: tuple[tuple[int, float], ...]) -> None:
        self.windows = windows
        self.horizon = max(period for _, period in windows)
        self._calls: dict[Hashable, array[float]] = {}
        self._since_prune = 0

    def wait_time(self, scope: Hashable, now: float) -> float:
        """0 when a call now fits every window, else the seconds until it would."""
        calls = self._calls.get(scope)
        if not calls:
            return 0.0
        # Forget calls older than the longest window.
        if calls[0] <= now - self.horizon:
            del calls[: bisect_right(calls, now - self.horizon)]
        wait = 0.0
        count = len(calls)
        for limit, period in self.windows:
            if count >= limit:
                # The limit-th most recent call must leave this window before there is room.
                oldest_needed = calls[count - limit]
                if oldest_needed > now - period:
                    wait = max(wait, oldest_needed + period - now)
        return wait

    def record(self, scope: Hashable, now: float) -> None:
        calls = self._calls.get(scope)
        if calls is None:
            calls = self._calls[scope] = array("d")
        calls.append(now)
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self._prune(now)

    def _prune(self, now: float) -> None:
        self._since_prune = 0
        cutoff = now - self.horizon
        stale = [scope for scope, calls in self._calls.items() if not calls or calls[-1] <= cutoff]
        for scope in stale:
            del self._calls[scope]

    def clear(self) -> None:
        self._calls.clear()
        self._since_prune = 0


class MadeMoments:
    """The moments callers say they made the calls a limit accepted (their ``X-Crier-Sent-At``), to tell,
    for a call refused by its arrival, whether its caller had gone over the limit at all, or whether the
    calls only bunched up on their way (a busy machine delays some more than others)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self._moments: dict[Hashable, list[float]] = {}

    def record(self, scope: Hashable, made: float) -> None:
        moments = self._moments.setdefault(scope, [])
        insort(moments, made)
        if moments[0] < made - 10 * self.period:
            del moments[: bisect_left(moments, made - 10 * self.period)]

    def over(self, scope: Hashable, made: float) -> bool:
        """Whether a call made at ``made`` would put more than the limit into some window of the period that holds
        it. Such a window's count changes only where an edge meets a moment: windows that start at ``made`` less the
        period, at ``made``, at a moment before it, or a period before a moment after it are every case."""
        moments = self._moments.get(scope, [])
        near = moments[bisect_left(moments, made - self.period): bisect_right(moments, made + self.period)]
        starts = [made - self.period, made, *[m for m in near if m <= made], *[m - self.period for m in near if m > made]]
        for start in starts:
            inside = sum(1 for m in near if start <= m <= start + self.period)
            if inside + 1 > self.limit:
                return True
        return False

    def clear(self) -> None:
        self._moments.clear()


def retry_after_header(wait: float) -> int:
    """Whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


# A call made this soon after a 429 was answered was already on its way when the caller learned of
# the wait (a busy client sends from many threads at once): it is counted apart from the calls made
# when the caller could have known. When the caller says when it made the call (the
# ``X-Crier-Sent-At`` header, this machine's clock), that moment is judged, not the arrival: a
# call that waited for a core on a busy machine was still made in time.
IN_FLIGHT_GRACE_SECONDS = 0.1
SENT_AT_HEADER = "X-Crier-Sent-At"


def made_at(header: str | None, now: float) -> float:
    """When the call was made, on the monotonic clock of ``now``: from the caller's wall-clock stamp,
    if it gave a believable one (in the last ten seconds), else its arrival."""
    try:
        ago = time.time() - float(header) if header else 0.0
    except ValueError:
        ago = 0.0
    return now - ago if 0.0 < ago < 10.0 else now
EARLY_SAMPLES = 20  # the latest early calls kept, with what is known of them, for the stats


class RetryAfterTracker:
    """Remembers, per scope, when callers were told to wait and until when, and counts the calls
    that come sooner: ``early_calls`` (made after the caller could have known) and
    ``in_flight_calls`` (arriving within ``IN_FLIGHT_GRACE_SECONDS`` of the 429). The latest early
    calls are kept as samples: which scope, how long after the caller was told it was made and when it
    arrived, how long before the wait ended, and whether the call carried a token never seen before
    (the caller had just fetched one)."""

    def __init__(self) -> None:
        self._until: dict[Hashable, tuple[float, float]] = {}  # scope -> (told at, wait until)
        self.early_calls = 0
        self.in_flight_calls = 0
        self.early_samples: deque[dict[str, object]] = deque(maxlen=EARLY_SAMPLES)

    def told_to_wait(self, scope: Hashable, until: float, now: float) -> None:
        told_at, current = self._until.get(scope, (now, 0.0))
        if until > current:
            # A wait still running is extended from when the caller was first told of it.
            self._until[scope] = (told_at if now < current else now, until)

    def _wait(self, scope: Hashable, now: float, made: float) -> tuple[float, float, float] | None:
        """(seconds from when the caller was told to wait to when it made this call, then to when it
        arrived, seconds left) if this call arrives before the wait is over."""
        told = self._until.get(scope)
        if told is None:
            return None
        if now < told[1]:
            return made - told[0], now - told[0], told[1] - now
        del self._until[scope]
        return None

    def is_early(self, scope: Hashable, now: float) -> bool:
        return self._wait(scope, now, now) is not None

    def note_call(
        self, scopes: tuple[Hashable, ...], now: float, *, made: float | None = None, new_token: bool = False
    ) -> None:
        """Counts the call once if it arrives before a wait is over in any of its scopes; ``made`` is
        when the caller made it (its arrival if unknown)."""
        if not self._until:
            return
        waits = []
        for scope in scopes:
            wait = self._wait(scope, now, now if made is None else made)
            if wait is not None:
                waits.append((*wait, scope))
        if not waits:
            return
        late, arrived, left, scope = max(waits, key=lambda wait: wait[0])
        if late < IN_FLIGHT_GRACE_SECONDS:
            self.in_flight_calls += 1
            return
        self.early_calls += 1
        kind = scope[0] if isinstance(scope, tuple) and scope else str(scope)
        self.early_samples.append({
            "scope": kind,
            "late_ms": round(late * 1000),  # made this long after the 429
            "arrived_ms": round(arrived * 1000),
            "left_ms": round(left * 1000),
            "new_token": new_token,
        })

    def clear(self) -> None:
        self._until.clear()
        self.early_calls = 0
        self.in_flight_calls = 0
        self.early_samples.clear()
