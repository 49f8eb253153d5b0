"""Acknowledgements: a person presses the button of a message that asks for one (``campaigns.card_actions``), and
Crier records it and answers with the card they now see (``delivery.card_views`` finds their message).

A press on a follow-up's card (``delivery.follow_ups``) acknowledges the campaign it follows, and is counted in the
follow-up's results too (its row's ``acknowledged_at``). Pressing again, or Teams sending the invoke twice, records
nothing more and answers the same card. A policy's edit is a new version (``Campaign.message_version``): it clears
everyone's acknowledgement, and a press on a card of an older version records nothing and answers the card as it is
now, to be acknowledged again. Each acknowledgement is
also kept as a row of its own (``Acknowledgement``), version by version: what the audit export lists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign

from . import progress, webhooks
from .card_views import Answer, Target, card_view, target_find
from .models import Acknowledgement, campaign_ids

POLICY = Campaign.Acknowledgement.POLICY
Via = Acknowledgement.Via
NOT_ASKED = Answer(404, code="NotFound", message="This message does not ask for an acknowledgement.")


def acknowledgement_answer(*, aad_object_id: str, data: Any, reply_to: str | None,
                           via: str = Via.BUTTON) -> Answer:
    """Records the acknowledgement of the person ``aad_object_id`` (whose token Teams' invoke carried) of the message
    the button's ``data`` names (``reply_to``: the message Teams says the card is, when it says), and answers with
    the card they now see."""
    with transaction.atomic():
        target = target_find(aad_object_id=aad_object_id, data=data, reply_to=reply_to, lock=True)
        if isinstance(target, Answer):
            return target
        if not target.ask.mode:
            return NOT_ASKED
        recorded = False
        if target.acknowledged_at is None and (target.ask.mode != POLICY or target.version == target.current):
            target.acknowledged_at, recorded = _record(target, min(target.version, target.current), via)
        return Answer(200, card=card_view(target), acknowledged_at=target.acknowledged_at, recorded=recorded)


# The acknowledgement on the person's row, kept as a row of its own, and (a follow-up's card) on the follow-up's row
# too, in one statement; nothing when a press in a race with this one recorded it first.
RECORD = """
WITH acknowledged AS (
  UPDATE delivery_delivery SET acknowledged_at = %(now)s
   WHERE id = %(delivery)s AND acknowledged_at IS NULL
  RETURNING id),
     kept AS (
  INSERT INTO delivery_acknowledgement (delivery_id, version, via, acknowledged_at)
  SELECT id, %(version)s, %(via)s, %(now)s FROM acknowledged
  ON CONFLICT DO NOTHING),
     brought AS (
  UPDATE delivery_delivery SET acknowledged_at = %(now)s
   WHERE %(follow_up)s AND id = %(message)s AND acknowledged_at IS NULL AND EXISTS (SELECT 1 FROM acknowledged)
  RETURNING id)
SELECT EXISTS (SELECT 1 FROM acknowledged), EXISTS (SELECT 1 FROM brought)
"""


def _record(target: Target, version: int, via: str) -> tuple[datetime, bool]:
    """Records the acknowledgement of ``version``; returns when the person acknowledged it, and whether this did."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(RECORD, {"now": now, "delivery": target.delivery_id, "version": version, "via": via,
                                "follow_up": target.follow_up, "message": target.message_delivery_id})
        recorded, brought = cursor.fetchone()
        if not recorded:  # the press it raced recorded it: its time, as committed (a statement of its own sees it)
            cursor.execute("SELECT acknowledged_at FROM delivery_delivery WHERE id = %s", [target.delivery_id])
            return cursor.fetchone()[0], False
    webhooks.event_record(type="delivery.acknowledged", payload={
        "delivery": target.delivery_id, "campaign": target.campaign_id, "recipient": target.person.external_id,
        "version": version, "via": via, "acknowledged_at": now})
    campaign_id = target.campaign_id
    transaction.on_commit(lambda: progress.record(campaign_id, acknowledged=1))
    if target.follow_up and brought:
        message_campaign_id = target.message_campaign_id
        transaction.on_commit(lambda: progress.record(message_campaign_id, acknowledged=1))
    return now, True


# --- a policy's edit ---------------------------------------------------------------------------------------------

CLEAR = """
UPDATE delivery_delivery SET acknowledged_at = NULL
 WHERE id >= %(lowest)s AND id < %(end)s AND acknowledged_at IS NOT NULL
"""


def acknowledgements_clear(*, campaign_id: int) -> int:
    """Everyone acknowledges a policy's edit again: clears the campaign's acknowledgements (their rows stay, for the
    audit) and takes them off its counter once this commits. Called under the campaign's row lock."""
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute(CLEAR, {"lowest": lowest, "end": end})
        cleared = cursor.rowcount
    if cleared:
        transaction.on_commit(lambda: progress.record(campaign_id, acknowledged=-cleared))
    return cleared
