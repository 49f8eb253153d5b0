"""Test slots let several runs of the suite share a machine (tests/slots.py)."""

import pytest

from tests.slots import redis_url_for, take_slot


def test_each_run_takes_the_first_free_slot_until_none_is_left(tmp_path):
    first = take_slot(2, "t", tmp_path)
    second = take_slot(2, "t", tmp_path)
    assert (first[0], second[0]) == (0, 1)
    assert take_slot(2, "t", tmp_path) is None
    second[1].close()
    again = take_slot(2, "t", tmp_path)
    assert again[0] == 1
    first[1].close()
    again[1].close()


def test_slots_of_another_tag_are_apart(tmp_path):
    mine = take_slot(1, "a", tmp_path)
    theirs = take_slot(1, "b", tmp_path)
    assert (mine[0], theirs[0]) == (0, 0)
    mine[1].close()
    theirs[1].close()


def test_slot_zero_keeps_the_redis_database_and_others_move_on():
    assert redis_url_for("redis://127.0.0.1:6379/11", 0) == "redis://127.0.0.1:6379/11"
    assert redis_url_for("redis://127.0.0.1:6379/11", 1) == "redis://127.0.0.1:6379/12"
    assert redis_url_for("redis://127.0.0.1:6379", 2) == "redis://127.0.0.1:6379/2"


def test_a_run_waits_a_while_for_a_slot_to_come_free(tmp_path):
    import threading

    held = take_slot(1, "t", tmp_path)
    threading.Timer(0.3, held[1].close).start()

    waited = take_slot(1, "t", tmp_path, wait=10)

    assert waited is not None and waited[0] == 0
    waited[1].close()


def test_a_run_moved_to_its_slot_queues_and_caches_there_though_its_clients_were_made_before(redis_client):
    import redis
    from django.conf import settings
    from django.core.cache import cache

    from delivery import jobs
    from tests.slots import use_slot

    from bots.pacing import pacer

    jobs.feed()  # Celery's pools now exist, made for this run's Redis database
    cache.set("slot-check", 1)
    pacer._scripts()  # and the pacer's scripts are registered on its client
    moved = redis_url_for(settings.REDIS_URL, 1)
    other = redis.Redis.from_url(moved)
    if int(moved.rsplit("/", 1)[1]) > 15:
        pytest.skip("no Redis database after this run's")
    other.flushdb()
    restore = use_slot(1)
    try:
        jobs.feed()
        cache.set("slot-check", 2)
        moved_db = pacer._scripts()[0].registered_client.connection_pool.connection_kwargs["db"]
    finally:
        restore()
    try:
        assert other.llen("control") == 1 and redis_client.llen("control") == 1
        assert other.keys("*slot-check") and cache.get("slot-check") == 1  # back where it was
        assert moved_db == int(moved.rsplit("/", 1)[1])
        jobs.feed()
        assert redis_client.llen("control") == 2
    finally:
        other.flushdb()
