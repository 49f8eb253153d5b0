"""The retry policy, in one place: how long to wait before the next attempt."""

from __future__ import annotations

import random

from django.conf import settings


def retry_delay(*, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Teams' ``Retry-After`` is a floor, never shortened; jitter only ever adds to it so that
    workers told the same thing do not all come back in the same millisecond. Without it:
    exponential backoff with jitter, capped."""
    if retry_after is not None:
        return retry_after + random.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05))
    ceiling = min(settings.DELIVERY_BACKOFF_MAX_SECONDS, settings.DELIVERY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
