"""The emulator's limit bookkeeping, by itself (no process): whether calls were over a limit by the moments
their callers made them."""

from __future__ import annotations

from emulator.limits import MadeMoments


def test_a_call_made_a_hair_before_the_calls_it_went_with_is_over_the_limit_with_them():
    moments = MadeMoments(3, 1.0)
    for made in (10.000002, 10.000003, 10.000004):  # the same instant, read on two clocks a hair apart
        moments.record("app", made)

    assert moments.over("app", 10.000001)  # four in a second
    assert moments.over("app", 10.000005)
    assert not moments.over("app", 8.9) and not moments.over("app", 11.1)


def test_calls_spread_over_more_than_the_period_are_not_over_it():
    moments = MadeMoments(3, 1.0)
    for made in (10.0, 10.4, 10.8):
        moments.record("app", made)

    assert not moments.over("app", 11.2)  # 10.4, 10.8, 11.2 and nothing else within a second
    assert moments.over("app", 10.9)  # 10.0 to 10.9: four
    assert not moments.over("other", 10.5)
