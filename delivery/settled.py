"""Where a campaign's rows that may still change begin.

A row that reached an end state (sent, failed, skipped) never leaves it, and a campaign whose rows
are all written gets no new ones, so every row below the first one not yet final stays final. That
row's id is the campaign's mark (``Campaign.settled_below``, in PostgreSQL with the rows it speaks
of): the completion check, the feeder after a rewind, the reconciler's searches for lost rows and a
cancel start there instead of at the campaign's first row, with no index of unfinished rows for a
launch to write a million times (see delivery.models).
"""

from __future__ import annotations

from campaigns.models import Campaign

from .models import UNSETTLED, Delivery, campaign_ids


def settled_below(campaign_id: int, mark: int) -> int:
    """The id below which every row of the campaign is final, from its ``mark`` (the campaign row's
    ``settled_below``, which callers read with the rest of the row): at least its first row's id."""
    return max(campaign_ids(campaign_id)[0], mark)


def first_unsettled(campaign_id: int, mark: int) -> int | None:
    """The id of the campaign's first row that is not final, or None; moves the campaign's ``mark``
    there. Only for a campaign whose rows are all written (rows written later could fall below)."""
    since = settled_below(campaign_id, mark)
    first = (
        Delivery.objects.of_campaign(campaign_id)
        .filter(pk__gte=since, status__in=UNSETTLED)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    mark = first if first is not None else campaign_ids(campaign_id)[1]
    if mark > since:
        Campaign.objects.filter(pk=campaign_id, settled_below__lt=mark).update(settled_below=mark)
    return first
