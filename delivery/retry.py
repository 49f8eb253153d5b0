"""The retry policy, in one place: how long to wait before the next attempt."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from core.channels import TransportError


def retry_in(*, attempt: int, error: TransportError) -> float | None:
    """Seconds until the next attempt after failed attempt number ``attempt``, or None to give up:
    the error is permanent, or that was the last of ``DELIVERY_MAX_ATTEMPTS``."""
    if error.permanent or attempt >= settings.DELIVERY_MAX_ATTEMPTS:
        return None
    return retry_delay(attempt=attempt, retry_after=error.retry_after)


def retry_delay(*, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Teams' ``Retry-After`` is a floor, never shortened; jitter only ever adds to it so that
    workers told the same thing do not all come back in the same millisecond. Without it:
    exponential backoff with jitter, capped."""
    if retry_after is not None:
        return retry_after + random.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05))
    ceiling = min(settings.DELIVERY_BACKOFF_MAX_SECONDS, settings.DELIVERY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
