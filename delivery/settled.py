"""Where a campaign's rows that may still change begin.

A row that reached an end state (sent, failed, skipped) never leaves it, and a campaign whose rows
are all written gets no new ones, so every row below the first one not yet final stays final. That
row's id is the campaign's mark, kept in Redis: the completion check, the feeder after a rewind, the
reconciler's searches for lost rows and a cancel start there instead of at the campaign's first row,
with no index of unfinished rows for a launch to write a million times (see delivery.models). A lost
mark costs one walk from the campaign's first row, which sets it again.
"""

from __future__ import annotations

import redis

from .models import UNSETTLED, Delivery, campaign_ids
from .progress import client

KEEP_SECONDS = 30 * 24 * 3600


def mark_key(campaign_id: int) -> str:
    return f"crier:settled:{campaign_id}"


def settled_below(campaign_id: int) -> int:
    """The id below which every row of the campaign is final (its first row's id when unknown)."""
    lowest, _ = campaign_ids(campaign_id)
    try:
        return max(lowest, int(client().get(mark_key(campaign_id)) or 0))
    except redis.RedisError:
        return lowest


def first_unsettled(campaign_id: int) -> int | None:
    """The id of the campaign's first row that is not final, or None; moves the mark there. Only
    for a campaign whose rows are all written (rows written later could fall below the mark)."""
    first = (
        Delivery.objects.of_campaign(campaign_id)
        .filter(pk__gte=settled_below(campaign_id), status__in=UNSETTLED)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    try:
        client().set(mark_key(campaign_id), first if first is not None else campaign_ids(campaign_id)[1], ex=KEEP_SECONDS)
    except redis.RedisError:
        pass
    return first
