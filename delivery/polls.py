"""Polls: a person chooses one option of a campaign's poll (or several, when it allows them) in the card, presses
*Answer*, and Crier records it and answers with the card they now see, their answer chosen (``delivery.card_views``
finds their message).

One answer a person (``PollAnswer``, keyed by their delivery), changeable until the poll closes: a change replaces
it. Only the poll's own options are taken, by their place; a single-choice poll takes one. Answers are counted per
option in the campaign's Redis counters (``poll:<n>``, and ``answered`` for the people who answered), moved by the
change each answer makes once it has committed, and rebuilt from the rows with the rest (``poll_counts_from_rows``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from campaigns.card_actions import POLL_INPUT

from . import progress, webhooks
from .card_views import Answer, Target, card_view, target_find

NOT_A_POLL = Answer(404, code="NotFound", message="This message has no poll.")
NO_SUCH_OPTION = Answer(400, code="BadRequest", message="Choose one of the poll's options.")
ONE_ONLY = Answer(400, code="BadRequest", message="This poll takes one answer: choose one option.")
MOST_CHARACTERS = 64  # "0,1,…,9" and room to spare: a longer value is no answer of a poll of ten options


def poll_answer(*, aad_object_id: str, data: Any, reply_to: str | None) -> Answer:
    """Records the answer of the person ``aad_object_id`` (whose token Teams' invoke carried) to the poll of the
    message the button's ``data`` names (with the card's choice in it), and answers with the card they now see. A
    closed poll records nothing and answers the card as it closed."""
    with transaction.atomic():
        target = target_find(aad_object_id=aad_object_id, data=data, reply_to=reply_to, lock=False)
        if isinstance(target, Answer):
            return target
        poll = target.ask.poll
        if poll is None:
            return NOT_A_POLL
        now = timezone.now()
        recorded, closed = False, poll.closed(now)
        if not closed:
            chosen = _chosen(data.get(POLL_INPUT), options=len(poll.options))
            if chosen is None:
                return NO_SUCH_OPTION
            if len(chosen) > 1 and not poll.multiple:
                return ONE_ONLY
            recorded = _record(target, chosen, now)
        return Answer(200, card=card_view(target), acknowledged_at=target.acknowledged_at, recorded=recorded,
                      closed=closed)


def _chosen(value: Any, *, options: int) -> tuple[int, ...] | None:
    """The options a choice set's value names ("2", or "0,2" for several), sorted, or None when it names no option
    of the poll, none at all, or one twice."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MOST_CHARACTERS:
        return None
    parts = value.split(",")
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    chosen = tuple(sorted(int(part) for part in parts))
    if len(set(chosen)) < len(chosen) or any(n >= options for n in chosen):
        return None
    return chosen


UPSERT = """
WITH before AS (SELECT choices FROM delivery_pollanswer WHERE delivery_id = %(delivery)s),
     written AS (
       INSERT INTO delivery_pollanswer (delivery_id, choices, answered_at)
       VALUES (%(delivery)s, %(chosen)s, %(now)s)
       ON CONFLICT (delivery_id) DO UPDATE SET choices = EXCLUDED.choices, changed_at = EXCLUDED.answered_at
        WHERE delivery_pollanswer.choices IS DISTINCT FROM EXCLUDED.choices
       RETURNING 1)
SELECT (SELECT choices FROM before), EXISTS (SELECT 1 FROM written)
"""


def _record(target: Target, chosen: tuple[int, ...], now: datetime) -> bool:
    """Writes the person's answer; moves the counters by what it changed once it commits. Returns whether it
    changed anything (the same answer again changes nothing)."""
    with connection.cursor() as cursor:
        # The person's presses one after the other (Teams may send one twice at once): each then reads the answer
        # the one before it committed, and the counters move once.
        cursor.execute("SELECT 1 FROM delivery_delivery WHERE id = %s FOR NO KEY UPDATE", [target.delivery_id])
        cursor.execute(UPSERT, {"delivery": target.delivery_id, "chosen": list(chosen), "now": now})
        before, written = cursor.fetchone()
    if not written:
        return False
    before = tuple(before or ())
    moves = {f"{progress.POLL}{n}": 1 for n in chosen if n not in before}
    moves.update({f"{progress.POLL}{n}": -1 for n in before if n not in chosen})
    if not before:
        moves["answered"] = 1
    poll = target.ask.poll
    assert poll is not None
    webhooks.event_record(type="poll.answered", payload={
        "delivery": target.delivery_id, "campaign": target.campaign_id, "recipient": target.person.external_id,
        "choices": [poll.options[n] for n in chosen], "changed": bool(before), "answered_at": now})
    campaign_id = target.campaign_id
    transaction.on_commit(lambda: progress.record(campaign_id, **moves))
    return True

