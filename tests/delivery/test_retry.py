"""The retry policy: how long to wait after a failed call to Teams, and when to give up."""

from __future__ import annotations

import pytest

from core.channels import TransportError
from delivery import retry


def error(*, permanent: bool, retry_after: float | None = None) -> TransportError:
    return TransportError(code="X", message="x", status=503, permanent=permanent, retry_after=retry_after)


@pytest.fixture
def lowest(monkeypatch):
    """Jitter at its lowest: random.uniform(a, b) gives a."""
    monkeypatch.setattr(retry.random, "uniform", lambda a, b: a)


@pytest.fixture
def highest(monkeypatch):
    """Jitter at its highest: random.uniform(a, b) gives b."""
    monkeypatch.setattr(retry.random, "uniform", lambda a, b: b)


@pytest.fixture(autouse=True)
def backoff(settings):
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 2.0
    settings.DELIVERY_BACKOFF_MAX_SECONDS = 300.0
    settings.DELIVERY_MAX_ATTEMPTS = 5


def test_retry_after_is_a_floor_that_jitter_never_shortens(lowest):
    assert retry.retry_delay(attempt=3, retry_after=7.0) == 7.0


@pytest.mark.parametrize("retry_after, latest", [(2.0, 2.25), (5.0, 5.55), (20.0, 21.0), (0.0, 0.05)])
def test_jitter_after_retry_after_adds_a_tenth_of_it_and_a_little_at_most_a_second(highest, retry_after, latest):
    assert retry.retry_delay(attempt=1, retry_after=retry_after) == pytest.approx(latest)


@pytest.mark.parametrize("attempt, ceiling", [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (9, 300.0), (20, 300.0)])
def test_without_retry_after_the_wait_doubles_each_attempt_up_to_the_cap(highest, attempt, ceiling):
    assert retry.retry_delay(attempt=attempt, retry_after=None) == ceiling


@pytest.mark.parametrize("attempt, floor", [(1, 1.0), (2, 2.0), (4, 8.0), (20, 150.0)])
def test_without_retry_after_the_jitter_is_the_upper_half_of_the_backoff(lowest, attempt, floor):
    assert retry.retry_delay(attempt=attempt, retry_after=None) == floor


def test_a_permanent_error_is_never_retried(highest):
    assert retry.retry_in(attempt=1, error=error(permanent=True, retry_after=1.0)) is None


def test_a_transient_error_is_retried_until_the_last_attempt(highest):
    transient = error(permanent=False, retry_after=3.0)

    assert [retry.retry_in(attempt=n, error=transient) for n in range(1, 7)] == [3.35, 3.35, 3.35, 3.35, None, None]


def test_a_transient_error_without_retry_after_backs_off(highest):
    transient = error(permanent=False)

    assert retry.retry_in(attempt=2, error=transient) == 4.0
