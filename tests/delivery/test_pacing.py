"""The shared pacer, against real Redis. Assertions on time are lower bounds: the pacer must never
let calls go faster than allowed; how fast it can go is the benchmark's business."""

import json
import threading
import time
import uuid
from unittest import mock

import pytest
import redis

from delivery.pacing import Deferred, Pacer

TENANT = "tenant-a"


@pytest.fixture
def pace(settings, redis_client):
    settings.TEAMS_PACING = True
    settings.TEAMS_RATE_LIMIT_PER_SECOND = 50.0
    settings.TEAMS_PACE_FRACTION = 1.0
    settings.TEAMS_PACE_RECOVERY_PER_SECOND = 0.0
    return settings


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
    from delivery.transport import Address, TeamsTransport

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
