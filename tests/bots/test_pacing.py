"""The shared pacer, against real Redis. Assertions on time are lower bounds: the pacer must never
let calls go faster than allowed; how fast it can go is the benchmark's business."""

import json
import threading
import time
import uuid
from types import SimpleNamespace
from unittest import mock

import pytest
import redis
from django.conf import settings

from bots.pacing import Pacer
from core.channels import Deferred
from core.connections import redis_clock

TENANT = "tenant-a"


@pytest.fixture
def pace(settings, redis_client):
    settings.TEAMS_PACING = True
    settings.TEAMS_RATE_LIMIT_PER_SECOND = 50.0
    settings.TEAMS_PACE_FRACTION = 1.0
    settings.TEAMS_PACE_RECOVERY_PER_SECOND = 0.0
    return settings


def pause_left(pacer, tenant_id: str) -> float:
    """Seconds until every worker's next slot for the tenant, on Redis's clock (past a Retry-After)."""
    pause_until = pacer.client.hget(pacer.tenant_key(tenant_id), "pause_until")
    return float(pause_until or 0) - redis_clock(pacer.client)


def new_pacer(settings):
    return Pacer(redis.Redis.from_url(settings.REDIS_URL))


def test_calls_are_spaced_at_the_pace(pace):
    pacer = new_pacer(pace)
    started = time.monotonic()
    slept = [pacer.acquire(tenant_id=TENANT) for _ in range(11)]
    assert slept[0] == 0.0
    assert time.monotonic() - started >= 10 / 50 - 0.01


def test_workers_in_different_processes_share_one_pace(pace):
    calls: list[float] = []
    lock = threading.Lock()

    def worker():
        pacer = new_pacer(pace)  # its own connection, as another process would have
        for _ in range(10):
            pacer.acquire(tenant_id=TENANT)
            with lock:
                calls.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    calls.sort()
    assert len(calls) == 30
    # 30 calls at 50 per second need at least 29 intervals of 20 ms between the first and the last.
    assert calls[-1] - calls[0] >= 29 / 50 - 0.02
    # and no 1-second window ever holds more than 50 (here: no 10 calls within 180 ms)
    assert min(b - a for a, b in zip(calls, calls[9:])) >= 9 / 50 - 0.02


def test_retry_after_holds_back_every_worker_not_only_the_one_told(pace):
    told, other = new_pacer(pace), new_pacer(pace)
    told.acquire(tenant_id=TENANT)

    told.throttled(tenant_id=TENANT, retry_after=0.6)
    started = time.monotonic()
    other.acquire(tenant_id=TENANT)

    assert time.monotonic() - started >= 0.6 - 0.01


def test_a_retry_after_is_still_honoured_when_redis_forgets_it(pace, redis_client):
    told, other = new_pacer(pace), new_pacer(pace)
    told.throttled(tenant_id=TENANT, retry_after=0.6)
    with pytest.raises(Deferred):
        other.acquire(tenant_id=TENANT, max_sleep=0.1)  # the other process hears of it from its slot
    redis_client.flushdb()  # a Redis restart: the pause is gone from it
    started = time.monotonic()
    waited = {}

    def call(name, pacer):
        pacer.acquire(tenant_id=TENANT)
        waited[name] = time.monotonic() - started

    both = [threading.Thread(target=call, args=item) for item in (("told", told), ("other", other))]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert min(waited.values()) >= 0.3  # what was left of the 0.6 s, in each process


def test_a_pause_redis_lost_is_told_again_to_the_processes_that_never_heard_of_it(pace, redis_client):
    told, other = new_pacer(pace), new_pacer(pace)
    told.throttled(tenant_id=TENANT, retry_after=0.6)
    redis_client.flushdb()  # a Redis restart before the other process took a slot

    with pytest.raises(Deferred):
        told.acquire(tenant_id=TENANT, max_sleep=0.1)  # tells Redis again what it remembers
    started = time.monotonic()
    other.acquire(tenant_id=TENANT)

    assert time.monotonic() - started >= 0.3


def test_a_429_while_redis_is_away_still_holds_back_the_process_that_got_it(pace):
    pacer = new_pacer(pace)
    away = redis.ConnectionError("Redis is restarting")
    with mock.patch("redis.commands.core.Script.__call__", side_effect=away), pytest.raises(redis.RedisError):
        pacer.throttled(tenant_id=TENANT, retry_after=0.5)

    started = time.monotonic()
    pacer.acquire(tenant_id=TENANT)
    assert time.monotonic() - started >= 0.4


def test_retry_after_longer_than_a_worker_should_sleep_defers_the_delivery(pace):
    pacer = new_pacer(pace)
    pacer.throttled(tenant_id=TENANT, retry_after=30)
    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=5)
    assert 29 <= deferred.value.wait <= 30


def test_each_429_lowers_the_pace_which_then_recovers(pace):
    pace.TEAMS_PACE_DECREASE = 0.8
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)
    pacer.throttled(tenant_id=TENANT, retry_after=0)
    assert float(pacer.client.hget(pacer.tenant_key(TENANT), "rate")) == pytest.approx(40.0)
    pacer.throttled(tenant_id=TENANT, retry_after=0)
    rate = float(pacer.client.hget(pacer.tenant_key(TENANT), "rate"))
    assert rate == pytest.approx(32.0)

    pace.TEAMS_PACE_RECOVERY_PER_SECOND = 1.0  # of the full pace, per second
    time.sleep(0.2)
    pacer.acquire(tenant_id=TENANT)
    recovered = float(pacer.client.hget(pacer.tenant_key(TENANT), "rate"))
    assert 32.0 < recovered <= 50.0


def test_a_conversation_at_its_own_limit_is_deferred_not_waited_for(pace):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1000.0
    pacer = new_pacer(pace)
    for _ in range(7):
        pacer.acquire(tenant_id=TENANT, thread="conversation:a:1")
    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, thread="conversation:a:1")
    assert 0 < deferred.value.wait <= 1.0
    # Another conversation is not held back.
    pacer.acquire(tenant_id=TENANT, thread="conversation:a:2")


def test_tenants_are_paced_separately(pace):
    pacer = new_pacer(pace)
    pacer.throttled(tenant_id="tenant-a", retry_after=10)
    assert pacer.acquire(tenant_id="tenant-b") == 0.0


def test_pacing_can_be_switched_off(pace):
    pace.TEAMS_PACING = False
    pacer = new_pacer(pace)
    pacer.throttled(tenant_id=TENANT, retry_after=10)
    assert pacer.acquire(tenant_id=TENANT) == 0.0


def test_deferred_calls_reserve_nothing_so_no_backlog_builds_behind_a_long_retry_after(pace):
    pacer = new_pacer(pace)
    pacer.throttled(tenant_id=TENANT, retry_after=1.0)
    for _ in range(200):  # many workers told to come back later
        with pytest.raises(Deferred):
            pacer.acquire(tenant_id=TENANT, max_sleep=0.2)

    time.sleep(1.05)

    assert pacer.acquire(tenant_id=TENANT, max_sleep=0.2) <= 0.05  # free again at once: nothing piled up


def test_the_token_is_ready_before_the_slot_is_taken_so_no_call_waits_on_the_authority_past_it(pace, teams):
    from bots.connector import BotConnectorClient
    from bots.tokens import TokenProvider
    from bots.transport import TeamsTransport
    from core.channels import Address

    steps: list[str] = []

    class Tokens(TokenProvider):
        def get(self) -> str:
            steps.append("token")
            return super().get()

    class Slots(Pacer):
        def acquire(self, **arguments) -> float:
            steps.append("slot")
            return super().acquire(**arguments)

    transport = TeamsTransport(client=BotConnectorClient(tokens=Tokens()), pacing=Slots(redis.Redis.from_url(pace.REDIS_URL)))
    address = Address(member_id=str(uuid.uuid4()), tenant_id=pace.BOT_TENANT_ID, service_url=teams.service_url)

    result = transport.send(address=address, activity_json=json.dumps({"type": "message", "text": "hello"}).encode())

    assert result.activity_id and result.conversation_id
    assert steps[:2] == ["token", "slot"]  # creating the conversation: the token came first
    second = steps.index("slot", 1)
    assert steps[second - 1] == "token"  # and again before the send's slot


def most_in_one_second(moments: list[float]) -> int:
    """The largest number of the given moments that fall within any trailing 1 s window."""
    moments = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_threads_that_wake_late_together_never_put_more_than_the_limit_in_any_second(pace, monkeypatch):
    """A busy machine: every thread due to wake during a stall wakes at its end, together. The slots
    were 20 ms apart; the calls must still never be more than 50 in any trailing second."""
    import bots.pacing as pacing

    pace.TEAMS_PACE_FRACTION = 0.97  # the default, and the margin it leaves
    real_sleep, monotonic = time.sleep, time.monotonic
    started = monotonic()
    stall = (started + 0.4, started + 0.8)

    def late_sleep(seconds: float) -> None:
        wake = monotonic() + seconds
        if stall[0] <= wake < stall[1]:
            wake = stall[1]  # starved of CPU until the stall ends
        real_sleep(max(0.0, wake - monotonic()))

    monkeypatch.setattr(pacing, "time", SimpleNamespace(sleep=late_sleep, monotonic=monotonic))
    moments: list[float] = []
    lock = threading.Lock()

    def worker():
        pacer = new_pacer(pace)
        for _ in range(8):
            pacer.acquire(tenant_id=TENANT)
            now = redis_clock(pacer.client)  # the moment of the call, on the clock every worker shares
            with lock:
                moments.append(now)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(moments) == 128
    assert most_in_one_second(moments) <= 50


def fill_log(pacer, thread: str, ages: list[float]) -> None:
    """Calls already made in ``thread``, ``ages`` seconds ago (on Redis's clock)."""
    now = redis_clock(pacer.client)
    key = f"crier:thread:{settings.BOT_APP_ID}:{thread}"
    pacer.client.zadd(key, {f"past:{index}": now - age for index, age in enumerate(ages)})


def test_a_conversation_may_have_8_calls_in_2_seconds_and_no_more(pace):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1000.0
    pacer = new_pacer(pace)
    fill_log(pacer, "conversation:c:1", [1.1 + 0.1 * i for i in range(7)])  # 7 in the last 2 s, none in the last 1 s

    pacer.acquire(tenant_id=TENANT, thread="conversation:c:1")  # the 8th
    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, thread="conversation:c:1")
    assert 2 - 1.7 - 0.1 <= deferred.value.wait <= 2 - 1.7 + 0.05  # until the oldest leaves the 2 s window


def test_a_conversation_may_have_60_calls_in_30_seconds_and_no_more(pace):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1000.0
    pacer = new_pacer(pace)
    fill_log(pacer, "conversation:c:2", [3.0 + 0.4 * i for i in range(59)])  # 59 in the last 30 s, few per 2 s

    pacer.acquire(tenant_id=TENANT, thread="conversation:c:2")  # the 60th
    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, thread="conversation:c:2")
    oldest = 3.0 + 0.4 * 58
    assert 30 - oldest - 0.1 <= deferred.value.wait <= 30 - oldest + 0.05


def test_a_conversation_may_have_1800_calls_in_an_hour_and_no_more(pace):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1000.0
    pacer = new_pacer(pace)
    fill_log(pacer, "conversation:c:3", [40.0 + 1.9 * i for i in range(1799)])  # 1,799 in the hour, few per 30 s

    pacer.acquire(tenant_id=TENANT, thread="conversation:c:3")  # the 1,800th
    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, thread="conversation:c:3", max_sleep=5)
    oldest = 40.0 + 1.9 * 1798
    assert 3600 - oldest - 0.1 <= deferred.value.wait <= 3600 - oldest + 0.05


def test_a_call_waits_for_room_in_the_trailing_second_whatever_its_slot_says(pace, monkeypatch):
    import bots.pacing as pacing

    pace.TEAMS_PACE_FRACTION = 20.0  # slots 1 ms apart: only the check at the moment of the call holds
    monkeypatch.setattr(pacing, "call_window", lambda: 1 / 0.97)  # the margin the default pace leaves
    pacer = new_pacer(pace)
    moments = []
    for _ in range(60):
        pacer.acquire(tenant_id=TENANT)
        moments.append(redis_clock(pacer.client))

    assert most_in_one_second(moments) <= 50
    assert moments[-1] - moments[0] >= 1.0  # the 51st waited for the first to leave the window


def test_threads_that_wake_late_together_go_one_by_one_not_in_a_burst(pace, monkeypatch):
    """A burst reaches Teams spread unevenly (it answers one request after another), which would
    blur the trailing second the pacer keeps; late threads go at least half a slot apart instead."""
    import bots.pacing as pacing

    real_sleep, monotonic = time.sleep, time.monotonic
    stall_end = monotonic() + 0.5

    def late_sleep(seconds: float) -> None:
        real_sleep(max(0.0, max(monotonic() + seconds, stall_end) - monotonic()))  # all starved until then

    monkeypatch.setattr(pacing, "time", SimpleNamespace(sleep=late_sleep, monotonic=monotonic))
    pacers = [new_pacer(pace) for _ in range(12)]
    threads = [threading.Thread(target=pacer.acquire, kwargs={"tenant_id": TENANT}) for pacer in pacers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    moments = [score for _, score in pacers[0].client.zrange(pacers[0].calls_key(TENANT), 0, -1, withscores=True)]
    assert len(moments) == 12
    assert min(b - a for a, b in zip(moments, moments[1:])) >= 0.5 / 50 - 1e-6


def test_a_conversation_booked_behind_a_backlog_still_gets_no_more_than_7_calls_in_a_second(pace, monkeypatch):
    import time as real_time
    from types import SimpleNamespace

    from bots import pacing

    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1000.0
    pacer = new_pacer(pace)
    slots: list[float] = []
    # Instead of sleeping until its slot, each call notes the moment it would be made.
    monkeypatch.setattr(pacing, "time", SimpleNamespace(
        sleep=lambda seconds: None, monotonic=real_time.monotonic, time=real_time.time,
    ))
    pacer.client.hset(pacer.tenant_key(TENANT), "tat", redis_clock(pacer.client) + 2.5)  # a backlog of 2.5 s

    def call():
        before = redis_clock(pacer.client)
        try:
            slots.append(before + pacer.acquire(tenant_id=TENANT, thread="conversation:c:9", max_sleep=10))
        except Deferred:
            pass

    call()  # booked now, made in 2.5 s
    real_time.sleep(1.1)  # booked later, made right after it
    for _ in range(7):
        call()

    assert most_in_one_second(slots) <= 7


# What the pacer leaves in Redis and how it answers, pinned exactly: the app-wide limit, the log of
# calls let go, the Retry-After this process remembers, the campaigns' stop flags and the deferrals.


def state(pacer, tenant_id: str = TENANT) -> dict[str, float]:
    """The tenant's pace in Redis: its next free slot (tat), rate, when the rate was set, pause, calls."""
    return {key.decode(): float(value) for key, value in pacer.client.hgetall(pacer.tenant_key(tenant_id)).items()}


def keys(client) -> set[str]:
    return {key.decode() for key in client.keys("*")}


def recorded_sleeps(monkeypatch, after_first=None) -> list[float]:
    """The pacer's sleeps, real but recorded; ``after_first`` runs as the first one ends (what happened
    elsewhere while this worker slept)."""
    import bots.pacing as pacing

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)
        if len(slept) == 1 and after_first is not None:
            after_first()

    monkeypatch.setattr(pacing, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    return slept


def slot_ahead(pacer, seconds: float) -> None:
    """A backlog: the tenant's next free slot is ``seconds`` away."""
    pacer.client.hset(pacer.tenant_key(TENANT), "tat", redis_clock(pacer.client) + seconds)


def test_it_leaves_only_the_tenant_pace_and_its_log_of_calls_in_redis(pace):
    pacer = new_pacer(pace)
    assert pacer.acquire(tenant_id=TENANT) == 0.0
    pacer.acquire(tenant_id=TENANT)

    assert keys(pacer.client) == {pacer.tenant_key(TENANT), pacer.calls_key(TENANT)}  # no conversation log
    pace_state = state(pacer)
    assert set(pace_state) == {"tat", "rate", "rate_at", "seq"}  # and no pause announced: none was heard
    assert pace_state["seq"] == 2
    assert pacer.client.zcard(pacer.calls_key(TENANT)) == 2


def test_it_spaces_slots_at_the_published_limit_times_the_pace_fraction(pace):
    pace.TEAMS_PACE_FRACTION = 0.5
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)

    pace_state = state(pacer)
    assert pace_state["rate"] == 25.0
    assert pace_state["tat"] - pace_state["rate_at"] == pytest.approx(1 / 25, abs=1e-6)  # the next slot


@pytest.mark.parametrize(
    ("limit", "min_fraction", "floor"),
    [(50.0, 0.1, 5.0), (10.0, 0.05, 1.0)],  # a share of the pace, and never below one call a second
)
def test_it_never_lowers_the_pace_below_its_floor(pace, limit, min_fraction, floor):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = limit
    pace.TEAMS_PACE_MIN_FRACTION = min_fraction
    pace.TEAMS_PACE_DECREASE = 0.1
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)
    for _ in range(3):
        pacer.throttled(tenant_id=TENANT, retry_after=0)

    assert state(pacer)["rate"] == floor


def test_it_keeps_its_log_of_calls_for_the_window_and_a_second_more(pace):
    from bots.pacing import call_window

    pace.TEAMS_PACE_FRACTION = 0.97
    assert call_window() == pytest.approx(1 / 0.97)
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)
    assert 2031 - 100 <= pacer.client.pttl(pacer.calls_key(TENANT)) <= 2031  # ceil(1,030.9 ms) + 1 s

    pace.TEAMS_PACE_FRACTION = 2.0  # a pace past the limit never shrinks the window below a second
    assert call_window() == 1.0
    pace.TEAMS_PACE_FRACTION = 0.5
    assert call_window() == 2.0


def test_it_lets_no_more_than_the_published_limit_into_the_trailing_second_even_below_two_a_second(pace):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 1.0
    pace.TEAMS_PACE_FRACTION = 20.0  # slots 50 ms apart: only the log of calls holds the limit
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=0.4)

    assert 0.8 <= deferred.value.wait <= 1.0  # until the first call leaves the trailing second
    assert pacer.client.zcard(pacer.calls_key(TENANT)) == 1


def test_it_lets_calls_go_no_closer_than_half_a_slot_of_the_published_limit(pace, monkeypatch):
    pace.TEAMS_RATE_LIMIT_PER_SECOND = 2.0  # half a slot: 250 ms
    pace.TEAMS_PACE_FRACTION = 20.0  # slots 25 ms apart
    pacer = new_pacer(pace)
    pacer.acquire(tenant_id=TENANT)

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=0.1)
    assert 0.25 - 0.15 < deferred.value.wait <= 0.25

    slept = recorded_sleeps(monkeypatch)
    slot_ahead(pacer, 0.05)
    returned = pacer.acquire(tenant_id=TENANT)

    assert len(slept) == 2  # for its slot, then for half a slot after the last call
    assert returned == pytest.approx(sum(slept), abs=1e-9)  # every second slept is reported
    moments = [score for _, score in pacer.client.zrange(pacer.calls_key(TENANT), 0, -1, withscores=True)]
    assert len(moments) == 2
    assert moments[1] - moments[0] >= 0.25 - 1e-6


def test_it_defers_by_default_any_wait_longer_than_five_seconds(pace, monkeypatch):
    import bots.pacing as pacing

    class Slept(Exception):
        pass

    def sleep(seconds: float) -> None:
        raise Slept(seconds)

    monkeypatch.setattr(pacing, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    pacer = new_pacer(pace)
    pacer.throttled(tenant_id="tenant-long", retry_after=5.5)
    pacer.throttled(tenant_id="tenant-short", retry_after=4.5)

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id="tenant-long")
    assert 5.4 <= deferred.value.wait <= 5.5
    with pytest.raises(Slept) as slept:
        pacer.acquire(tenant_id="tenant-short")
    assert 4.4 <= slept.value.args[0] <= 4.5


def test_it_lets_a_call_go_when_no_wait_is_allowed_and_its_slot_is_free(pace):
    pacer = new_pacer(pace)
    assert pacer.acquire(tenant_id=TENANT, max_sleep=0) == 0.0


def test_it_stops_a_call_of_a_paused_or_cancelled_campaign_before_it_takes_a_slot(pace):
    from bots.pacing import stop_key
    from core.channels import Stopped

    pacer = new_pacer(pace)
    pacer.stop(campaign_id=7, reason="cancelled")

    with pytest.raises(Stopped) as stopped:
        pacer.acquire(tenant_id=TENANT, thread="conversation:s:1", campaign_id=7)

    assert stopped.value.reason == "cancelled"
    assert keys(pacer.client) == {stop_key(7)}  # no slot, no call, no conversation log
    assert pacer.client.get(stop_key(7)) == b"cancelled"
    assert 7 * 24 * 3600 - 5 <= pacer.client.ttl(stop_key(7)) <= 7 * 24 * 3600  # a week
    assert pacer.acquire(tenant_id=TENANT, campaign_id=8) == 0.0  # another campaign goes on

    pacer.resume(campaign_id=7)

    assert pacer.client.exists(stop_key(7)) == 0
    pacer.acquire(tenant_id=TENANT, thread="conversation:s:1", campaign_id=7)


def test_it_stops_a_call_of_a_stopped_campaign_when_pacing_is_off(pace):
    from core.channels import Stopped

    pace.TEAMS_PACING = False
    pacer = new_pacer(pace)
    pacer.stop(campaign_id=7, reason="paused")

    with pytest.raises(Stopped) as stopped:
        pacer.acquire(tenant_id=TENANT, campaign_id=7)
    assert stopped.value.reason == "paused"
    assert pacer.acquire(tenant_id=TENANT, campaign_id=8) == 0.0
    assert pacer.acquire(tenant_id=TENANT) == 0.0


def test_it_stops_a_call_whose_campaign_is_cancelled_while_it_sleeps_for_its_slot(pace, monkeypatch):
    from core.channels import Stopped

    pacer = new_pacer(pace)
    recorded_sleeps(monkeypatch, after_first=lambda: new_pacer(pace).stop(campaign_id=7, reason="cancelled"))
    slot_ahead(pacer, 0.1)

    with pytest.raises(Stopped) as stopped:
        pacer.acquire(tenant_id=TENANT, campaign_id=7)

    assert stopped.value.reason == "cancelled"
    assert pacer.client.zcard(pacer.calls_key(TENANT)) == 0  # the call was never let go


def test_it_takes_the_first_slot_past_a_retry_after_announced_while_it_slept(pace, monkeypatch):
    pacer, other = new_pacer(pace), new_pacer(pace)  # another process hears a 429 meanwhile
    slept = recorded_sleeps(monkeypatch, after_first=lambda: other.throttled(tenant_id=TENANT, retry_after=0.4))
    slot_ahead(pacer, 0.2)

    returned = pacer.acquire(tenant_id=TENANT, thread="conversation:p:1")

    assert len(slept) == 2  # for its slot, then past the pause
    assert returned == pytest.approx(sum(slept), abs=1e-9)
    assert 0.2 + 0.4 - 0.05 <= returned
    pace_state = state(pacer)
    assert pace_state["tat"] == pytest.approx(pace_state["pause_until"] + 1 / pace_state["rate"], abs=1e-6)
    thread_key = f"crier:thread:{settings.BOT_APP_ID}:conversation:p:1"
    assert keys(pacer.client) == {pacer.tenant_key(TENANT), pacer.calls_key(TENANT), thread_key}
    assert pacer.client.zcard(thread_key) == 1  # the conversation's call counted once
    (_, moment), = pacer.client.zrange(pacer.calls_key(TENANT), 0, -1, withscores=True)
    assert moment >= pace_state["pause_until"]


def test_it_defers_without_booking_a_slot_when_a_retry_after_heard_mid_sleep_outlasts_its_budget(pace, monkeypatch):
    pacer, other = new_pacer(pace), new_pacer(pace)
    recorded_sleeps(monkeypatch, after_first=lambda: other.throttled(tenant_id=TENANT, retry_after=0.9))
    slot_ahead(pacer, 0.2)

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=1.0)  # 0.2 s slept, 0.9 s more would pass the 1 s

    assert 0.8 <= deferred.value.wait <= 0.9
    pace_state = state(pacer)
    assert pace_state["tat"] == pace_state["pause_until"]  # no slot booked past the pause
    assert pacer.client.zcard(pacer.calls_key(TENANT)) == 0


def test_it_waits_out_a_retry_after_this_process_heard_while_it_slept_though_redis_never_did(pace, monkeypatch):
    pacer = new_pacer(pace)
    # Another thread of this process got a 429 and could not tell Redis.
    slept = recorded_sleeps(monkeypatch, after_first=lambda: pacer.heard(tenant_id=TENANT, pause=0.3))
    slot_ahead(pacer, 0.1)

    pacer.acquire(tenant_id=TENANT)

    assert len(slept) == 2
    assert 0.3 - 0.05 <= slept[1] <= 0.3
    assert pause_left(pacer, TENANT) > -0.05  # told to Redis, for every other worker
    (_, moment), = pacer.client.zrange(pacer.calls_key(TENANT), 0, -1, withscores=True)
    assert moment >= float(pacer.client.hget(pacer.tenant_key(TENANT), "pause_until"))


def test_it_remembers_the_longest_retry_after_heard_not_the_last(pace):
    pacer = new_pacer(pace)
    pacer.heard(tenant_id=TENANT, pause=0.6)
    pacer.heard(tenant_id=TENANT, pause=0.1)

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=0.2)

    assert 0.5 <= deferred.value.wait <= 0.6
    assert 0.45 <= pause_left(pacer, TENANT) <= 0.6  # Redis never knew: told now, for every worker
    assert state(pacer)["rate"] == 50.0  # the pace unchanged by telling


def test_it_leaves_the_pace_as_the_429_left_it_when_a_call_is_deferred_for_the_pause(pace):
    pace.TEAMS_PACE_DECREASE = 0.8
    pace.TEAMS_PACE_RECOVERY_PER_SECOND = 1.0
    told, other = new_pacer(pace), new_pacer(pace)
    told.acquire(tenant_id=TENANT)
    told.throttled(tenant_id=TENANT, retry_after=0.5)
    before = state(told)

    with pytest.raises(Deferred):
        other.acquire(tenant_id=TENANT, max_sleep=0.1)

    assert state(other) == before  # nothing booked, the rate's recovery not restarted


def test_it_pauses_a_tenant_for_one_second_when_teams_gives_no_retry_after(pace, redis_client):
    pacer = new_pacer(pace)
    assert 0.95 <= pacer.throttled(tenant_id=TENANT, retry_after=None) <= 1.0
    assert 0.7 <= pause_left(pacer, TENANT) <= 1.0  # less whatever a loaded machine took in between
    redis_client.flushdb()

    with pytest.raises(Deferred) as deferred:
        pacer.acquire(tenant_id=TENANT, max_sleep=0.1)  # remembered in the process too
    assert 0.7 <= deferred.value.wait <= 1.0


def test_it_keeps_the_longer_of_two_retry_afters_and_answers_what_is_left_of_it(pace):
    pacer = new_pacer(pace)
    assert 0.95 <= pacer.throttled(tenant_id=TENANT, retry_after=1.0) <= 1.0
    assert 0.7 <= pacer.throttled(tenant_id=TENANT, retry_after=0.2) <= 1.0


def test_it_pauses_nothing_and_tells_nothing_when_pacing_is_off(pace):
    pace.TEAMS_PACING = False
    pacer = new_pacer(pace)
    assert pacer.throttled(tenant_id=TENANT, retry_after=10) == 0.0
    assert keys(pacer.client) == set()


def test_it_uses_the_redis_it_was_given_not_the_default_one(pace):
    from core.channels import Stopped

    client = redis.Redis.from_url(pace.REDIS_URL)
    pace.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    pacer = Pacer(client)

    pacer.acquire(tenant_id=TENANT)
    pacer.throttled(tenant_id=TENANT, retry_after=0)
    pacer.stop(campaign_id=7, reason="paused")
    with pytest.raises(Stopped):
        pacer.acquire(tenant_id=TENANT, campaign_id=7)
    pacer.resume(campaign_id=7)
    pacer.acquire(tenant_id=TENANT, campaign_id=7)  # on the default Redis, each call would raise
    assert keys(client)  # the pace and its log of calls are in the Redis it was given


def test_it_remembers_a_pause_it_learned_from_its_slot_once_redis_forgets_it(pace, redis_client):
    told, other = new_pacer(pace), new_pacer(pace)
    told.throttled(tenant_id=TENANT, retry_after=0.6)
    with pytest.raises(Deferred):
        other.acquire(tenant_id=TENANT, max_sleep=0.1)  # its slot tells it of the pause
    redis_client.flushdb()  # a Redis restart

    with pytest.raises(Deferred) as deferred:
        other.acquire(tenant_id=TENANT, max_sleep=0.1)

    assert 0.4 <= deferred.value.wait <= 0.6
