"""Test slots let several runs of the suite share a machine (tests/slots.py)."""

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
