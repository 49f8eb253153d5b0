"""Pacing calls to Teams so that it almost never has to say no.

Shared by every worker process on every machine through Redis, atomically (Lua):

* per bot app and tenant, a generic cell rate algorithm: each call reserves the next free slot,
  ``1 / rate`` seconds after the previous one, and sleeps until it. The rate starts at a fraction of
  Microsoft's published limit (50 requests per second per app per tenant); a 429 lowers it and it
  recovers linearly, and a ``Retry-After`` pushes every worker's next slot past it;
* per bot app and tenant again, right before each call: a log of the moments calls were let go, so
  that no trailing second ever holds more than the published limit. Slots are spaced, but a thread
  that wakes late (a busy machine) would fire together with the threads due after it; it waits its
  turn in the log instead;
* per conversation (sends) and per person (conversation creation), Microsoft's per-thread windows
  (7 per 1 s, 8 per 2 s, 60 per 30 s, 1800 per hour); a call that would break one is deferred rather
  than made to wait while holding a worker.

Times come from Redis (``TIME``), so machines with skewed clocks still agree. Each process also
remembers the ``Retry-After`` it last heard of, from its own 429s and from every slot it takes, and
honours it even when Redis lost it (a restart empties Redis) or cannot be reached.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings

from core.channels import Deferred, Stopped
from core.connections import redis_for

# How both scripts begin: answer 'stop' if the campaign's flag (KEYS[3]) is set, and read Redis's clock.
STOP_AND_NOW = """
if KEYS[3] ~= '' then
  local stop = redis.call('GET', KEYS[3])
  if stop then return {'stop', stop} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS[1]: the app+tenant state (hash: tat, rate, rate_at, pause_until)
# KEYS[2]: the thread's log of calls (sorted set), or "" for none
# KEYS[3]: the campaign's stop flag ("paused" or "cancelled"), or "" for none
# ARGV: max_rate, min_rate, recovery per second, the longest wait worth sleeping, then window pairs
# (seconds, limit)...
ACQUIRE = STOP_AND_NOW + """
local max_rate, min_rate, recovery = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'rate_at', 'pause_until')
local tat = tonumber(s[1]) or 0
local rate = tonumber(s[2]) or max_rate
local rate_at = tonumber(s[3]) or now
local pause_until = tonumber(s[4]) or 0
rate = math.max(min_rate, math.min(max_rate, rate + recovery * math.max(0, now - rate_at)))
local start = math.max(now, tat, pause_until)
local paused = tostring(math.max(0, pause_until - now))
if start - now > tonumber(ARGV[4]) then
  -- Too long to sleep for: reserve nothing, so a long Retry-After does not pile up the schedule.
  return {'defer', tostring(start - now), paused}
end
if KEYS[2] ~= '' then
  -- The thread's calls are logged at their slots, the moments they will be made (slots only move
  -- forward), so its windows hold for the calls themselves, not for when they were booked.
  local longest = 0
  local allowed_at = start
  for i = 5, #ARGV, 2 do
    local window, limit = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    if window > longest then longest = window end
    local count = redis.call('ZCOUNT', KEYS[2], start - window, '+inf')
    if count >= limit then
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[2], start - window, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
      local free_at = tonumber(oldest[2]) + window
      if free_at > allowed_at then allowed_at = free_at end
    end
  end
  if allowed_at > start then
    return {'defer', tostring(allowed_at - now), paused}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', start - longest)
  redis.call('ZADD', KEYS[2], start, tostring(start) .. ':' .. tostring(math.random()))
  redis.call('EXPIRE', KEYS[2], math.ceil(longest + start - now))
end
redis.call('HSET', KEYS[1], 'tat', tostring(start + 1 / rate), 'rate', tostring(rate), 'rate_at', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return {'go', tostring(start - now), paused}
"""

# Right before the call. KEYS[1]: the app+tenant state, KEYS[2]: its log of calls let go (sorted set),
# KEYS[3]: the campaign's stop flag, or "". ARGV: the most calls in one window, the window in seconds,
# the least time between two calls. Answers 'go' (the call is logged), 'stop', 'paused' (a Retry-After
# arrived: take a slot past it) or 'full' with the seconds until the window has room.
ADMIT = STOP_AND_NOW + """
local pause_until = tonumber(redis.call('HGET', KEYS[1], 'pause_until')) or 0
if pause_until > now then return {'paused', tostring(pause_until - now)} end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(now - window))
local count = redis.call('ZCARD', KEYS[2])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[2], count - limit, count - limit, 'WITHSCORES')
  return {'full', tostring(math.max(0.001, tonumber(oldest[2]) + window - now))}
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) + tonumber(ARGV[3]) > now then
  return {'full', tostring(tonumber(last[2]) + tonumber(ARGV[3]) - now)}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], now, tostring(seq))
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000) + 1000)
return {'go', '0'}
"""


def call_window() -> float:
    """The log's window: a second, and the share of it the pace leaves unused (1 / 0.97 s by default).
    The moment logged comes some milliseconds before the request reaches Teams, and those milliseconds
    vary from call to call (more on a busy machine); the margin absorbs them at no cost to the pace,
    since 48.5 calls in 1.031 s stay within 50. Lowering ``TEAMS_PACE_FRACTION`` widens it."""
    return max(1.0, 1.0 / settings.TEAMS_PACE_FRACTION)

# KEYS[1]: the app+tenant state. ARGV: retry_after seconds, min_rate, decrease factor
THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'rate', 'pause_until', 'tat')
local rate = tonumber(s[1]) or tonumber(ARGV[2])
local pause_until = math.max(tonumber(s[2]) or 0, now + tonumber(ARGV[1]))
local tat = math.max(tonumber(s[3]) or 0, pause_until)
rate = math.max(tonumber(ARGV[2]), rate * tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'rate_at', tostring(now), 'pause_until', tostring(pause_until), 'tat', tostring(tat))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(pause_until - now)
"""

# Microsoft's per-thread limits for sends and conversation creation: (seconds, calls).
THREAD_WINDOWS = ((1, 7), (2, 8), (30, 60), (3600, 1800))


def stop_key(campaign_id: int) -> str:
    return f"crier:stop:{campaign_id}"


class Pacer:
    def __init__(self, client: redis.Redis | None = None) -> None:
        self._heard: dict[str, float] = {}  # tenant -> end of the last Retry-After heard of (monotonic)
        self._client = client
        self._acquire = None
        self._admit = None
        self._throttled = None

    @property
    def client(self) -> redis.Redis:
        return self._client if self._client is not None else redis_for(settings.REDIS_URL)

    def _scripts(self):
        if self._acquire is None:
            self._acquire = self.client.register_script(ACQUIRE)
            self._admit = self.client.register_script(ADMIT)
            self._throttled = self.client.register_script(THROTTLED)
        return self._acquire, self._throttled

    @staticmethod
    def tenant_key(tenant_id: str) -> str:
        return f"crier:pace:{settings.BOT_APP_ID}:{tenant_id}"

    @staticmethod
    def calls_key(tenant_id: str) -> str:
        return f"crier:calls:{settings.BOT_APP_ID}:{tenant_id}"

    def _rates(self) -> tuple[float, float]:
        top = settings.TEAMS_RATE_LIMIT_PER_SECOND * settings.TEAMS_PACE_FRACTION
        return top, max(1.0, top * settings.TEAMS_PACE_MIN_FRACTION)

    def acquire(
        self, *, tenant_id: str, thread: str | None = None, campaign_id: int | None = None, max_sleep: float = 5.0
    ) -> float:
        """Blocks until this process may make one call for ``tenant_id`` (and ``thread``, a
        conversation or person). Returns the seconds slept. Raises Deferred if the thread is busy or
        the wait would be longer than ``max_sleep``, and Stopped if the campaign was paused or
        cancelled, even while this process slept."""
        acquire, _ = self._scripts()
        top, bottom = self._rates()
        paced = settings.TEAMS_PACING
        windows = [str(value) for pair in THREAD_WINDOWS for value in pair] if thread and paced else []
        thread_key = f"crier:thread:{settings.BOT_APP_ID}:{thread}" if thread and paced else ""
        stop = stop_key(campaign_id) if campaign_id is not None else ""
        if not paced:
            if stop and (reason := self.client.get(stop)):
                raise Stopped(reason.decode())
            return 0.0
        slept = 0.0
        while True:
            answer = acquire(
                keys=[self.tenant_key(tenant_id), thread_key, stop],
                args=[top, bottom, top * settings.TEAMS_PACE_RECOVERY_PER_SECOND, max(0.0, max_sleep - slept), *windows],
            )
            verdict = answer[0].decode()
            if verdict == "stop":
                raise Stopped(answer[1].decode())
            told = float(answer[2]) if len(answer) > 2 else 0.0
            self.heard(tenant_id=tenant_id, pause=told)
            heard_left = self._heard_left(tenant_id)
            if len(answer) > 2 and heard_left > told + 0.05:
                self._retell(tenant_id, heard_left)  # Redis lost it (a restart): every worker hears again
            wait = max(float(answer[1]), heard_left)
            if verdict == "defer" or slept + wait > max_sleep:
                raise Deferred(wait=max(wait, 0.05))
            if wait > 0:
                time.sleep(wait)
                slept += wait
            thread_key, windows = "", []  # the thread's call is already counted
            admitted, slept = self._admit_call(tenant_id=tenant_id, stop=stop, slept=slept, max_sleep=max_sleep)
            if admitted:
                return slept
            # A Retry-After announced while this process slept: take a slot past it.

    def _admit_call(self, *, tenant_id: str, stop: str, slept: float, max_sleep: float) -> tuple[bool, float]:
        """Lets the call go only if the trailing second (and a little) holds fewer calls than the
        limit, and half a slot has passed since the last call (threads that woke late together go one
        by one, not in a burst that Teams would receive unevenly spread), waiting if not. Returns
        (False, slept) when a Retry-After was heard of meanwhile."""
        limit = max(1, int(settings.TEAMS_RATE_LIMIT_PER_SECOND))
        gap = 0.5 / settings.TEAMS_RATE_LIMIT_PER_SECOND
        while True:
            if self._heard_left(tenant_id) > 0:
                return False, slept
            answer = self._admit(
                keys=[self.tenant_key(tenant_id), self.calls_key(tenant_id), stop], args=[limit, call_window(), gap]
            )
            verdict = answer[0].decode()
            if verdict == "go":
                return True, slept
            if verdict == "stop":
                raise Stopped(answer[1].decode())
            if verdict == "paused":
                return False, slept
            wait = float(answer[1])
            if slept + wait > max_sleep:
                raise Deferred(wait=max(wait, 0.05))
            time.sleep(wait)
            slept += wait

    def heard(self, *, tenant_id: str, pause: float) -> None:
        """Remembers in this process that the tenant must wait ``pause`` seconds from now."""
        if pause > 0:
            self._heard[tenant_id] = max(self._heard.get(tenant_id, 0.0), time.monotonic() + pause)

    def _retell(self, tenant_id: str, pause: float) -> None:
        _, throttled = self._scripts()
        _, bottom = self._rates()
        throttled(keys=[self.tenant_key(tenant_id)], args=[pause, bottom, 1.0])  # the pace unchanged

    def forget_heard(self) -> None:
        """Forgets every pause heard (with an emptied Redis, for a fresh start)."""
        self._heard.clear()

    def _heard_left(self, tenant_id: str) -> float:
        return self._heard.get(tenant_id, 0.0) - time.monotonic()

    def stop(self, *, campaign_id: int, reason: str) -> None:
        self.client.set(stop_key(campaign_id), reason, ex=7 * 24 * 3600)

    def resume(self, *, campaign_id: int) -> None:
        self.client.delete(stop_key(campaign_id))

    def throttled(self, *, tenant_id: str, retry_after: float | None) -> float:
        """Teams answered 429: every worker waits ``retry_after`` (1 s if Teams gave none) and the
        pace drops. Returns the pause in seconds."""
        if not settings.TEAMS_PACING:
            return 0.0
        _, throttled = self._scripts()
        _, bottom = self._rates()
        pause = retry_after if retry_after is not None else 1.0
        self.heard(tenant_id=tenant_id, pause=pause)  # kept here if Redis cannot be told, or forgets
        return float(throttled(keys=[self.tenant_key(tenant_id)], args=[pause, bottom, settings.TEAMS_PACE_DECREASE]))


pacer = Pacer()
