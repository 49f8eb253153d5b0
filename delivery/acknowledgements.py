"""Acknowledgements: a person presses the button of a message that asks for one (``campaigns.card_actions``), and
Teams asks Crier for the card they see (bots.services hands each invoke here).

Whose acknowledgement it is, Teams says: the invoke's sender, whose token Crier checked. The button's data only
names the campaign and the version of its message; the person's row is found from the two (its id is campaign and
person: ``delivery.models``), and counts only when the message was sent to them. Pressing again, or Teams sending
the invoke twice, records nothing more and answers the same card.

A policy's edit is a new version (``Campaign.message_version``): it clears everyone's acknowledgement, and a press
on a card of an older version records nothing and answers the card as it is now, to be acknowledged again. Each
acknowledgement is also kept as a row of its own (``Acknowledgement``), version by version: what the audit export
lists. An acknowledgement takes a share of the campaign's row (``FOR KEY SHARE``, which only an edit's lock
conflicts with), so an edit waits for the presses under way and those that follow see its version.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from campaigns.card_actions import Ask, ask_of, card_acknowledged, card_asking_again, content_asking
from campaigns.models import Campaign, Recipient
from campaigns.rendering import CompiledMessage, compile_message

from . import progress, webhooks
from .models import PERSON_BITS, Acknowledgement, Delivery, MessageChange, campaign_ids

POLICY = Campaign.Acknowledgement.POLICY
Via = Acknowledgement.Via


@dataclass(frozen=True)
class Answer:
    """What Crier answers a press or a refresh with: the card the person sees now, or why there is none."""

    status: int  # 200, or 400 / 403 / 404 as the invoke's statusCode
    card: dict[str, Any] | None = None
    code: str = ""
    message: str = ""
    acknowledged_at: datetime | None = field(default=None, compare=False)
    recorded: bool = False  # this press recorded the acknowledgement


BAD = Answer(400, code="BadRequest", message="This button does not name a message of Crier's.")
NOT_FOUND = Answer(404, code="NotFound", message="This message no longer asks for an acknowledgement.")
NOT_YOURS = Answer(403, code="Forbidden", message="This message was not sent to you, so you cannot acknowledge it.")


def _campaign_and_version(data: Any) -> tuple[uuid.UUID, int] | None:
    if not isinstance(data, dict):
        return None
    try:
        public_id = uuid.UUID(str(data.get("campaign")))
        version = int(data.get("version"))
    except (TypeError, ValueError, AttributeError):
        return None
    return (public_id, version) if 0 < version < 2**31 else None


def _person(aad_object_id: str) -> Recipient | None:
    try:
        aad = uuid.UUID(str(aad_object_id))
    except (TypeError, ValueError, AttributeError):
        return None
    return Recipient.objects.filter(aad_object_id=aad).first()


def acknowledgement_answer(*, aad_object_id: str, data: Any, press: bool, via: str = Via.BUTTON) -> Answer:
    """Answers a press of the button (``press``, recording the acknowledgement) or a refresh (the card as the person
    should see it now) by the person ``aad_object_id``, whose token Teams' invoke carried."""
    found = _campaign_and_version(data)
    if found is None:
        return BAD
    public_id, version = found
    person = _person(aad_object_id)
    with transaction.atomic():
        with connection.cursor() as cursor:  # a share of the campaign's row, held to the end: see the module's text
            cursor.execute("SELECT id, acknowledgement, message_version FROM campaigns_campaign WHERE public_id = %s "
                           "AND acknowledgement <> '' FOR KEY SHARE", [public_id])
            row = cursor.fetchone()
        if row is None:
            return NOT_FOUND
        campaign_id, mode, current = row
        if person is None:
            return NOT_YOURS
        delivery_id = (campaign_id << PERSON_BITS) + person.id
        delivery = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENT).only(
            "id", "acknowledged_at", "activity_id").first()
        if delivery is None:
            return NOT_YOURS
        at, recorded = delivery.acknowledged_at, False
        if press and at is None and (mode != POLICY or version == current):
            at, recorded = _record(delivery_id, campaign_id, min(version, current), via)
    ask = ask_of(public_id=public_id, version=current, mode=mode)
    card = _card(campaign_id, current, person)
    if at is not None:
        card = card_acknowledged(card, at=at, ask=ask)
    elif mode == POLICY and Acknowledgement.objects.filter(delivery_id=delivery_id).exists():
        card = card_asking_again(card, ask=ask)
    return Answer(200, card=card, acknowledged_at=at, recorded=recorded)


ACKNOWLEDGE = """
UPDATE delivery_delivery SET acknowledged_at = %(now)s
 WHERE id = %(delivery)s AND acknowledged_at IS NULL
RETURNING acknowledged_at
"""
KEEP = """
INSERT INTO delivery_acknowledgement (delivery_id, version, via, acknowledged_at)
VALUES (%(delivery)s, %(version)s, %(via)s, %(now)s)
ON CONFLICT DO NOTHING
"""


def _record(delivery_id: int, campaign_id: int, version: int, via: str) -> tuple[datetime, bool]:
    """Records the acknowledgement of ``version``; returns when the person acknowledged it, and whether this did."""
    now = timezone.now()
    params = {"now": now, "delivery": delivery_id, "version": version, "via": via}
    with connection.cursor() as cursor:
        cursor.execute(ACKNOWLEDGE, params)
        if cursor.fetchone() is None:  # a press in a race with this one recorded it
            cursor.execute("SELECT acknowledged_at FROM delivery_delivery WHERE id = %s", [delivery_id])
            return cursor.fetchone()[0], False
        cursor.execute(KEEP, params)
    if "delivery.acknowledged" in webhooks.wanted_types():
        recipient = Recipient.objects.filter(pk=delivery_id & ((1 << PERSON_BITS) - 1)).values_list(
            "external_id", flat=True).first()
        webhooks.event_record(type="delivery.acknowledged", payload={
            "delivery": delivery_id, "campaign": campaign_id, "recipient": recipient, "version": version, "via": via,
            "acknowledged_at": now})
    transaction.on_commit(lambda: progress.record(campaign_id, acknowledged=1))
    return now, True


def _card(campaign_id: int, version: int, person: Recipient) -> dict[str, Any]:
    """The campaign's card as sent to ``person`` in its current version, asking for the acknowledgement."""
    edit = MessageChange.objects.filter(campaign_id=campaign_id, action=MessageChange.Action.EDIT).order_by(
        "-id").values_list("id", flat=True).first()
    template = Campaign.objects.filter(pk=campaign_id).values_list("template_id", "template__updated_at").first()
    compiled = _compiled(campaign_id, version, edit, template[0], template[1].isoformat())
    activity = json.loads(compiled.render(person))
    return activity["attachments"][0]["content"]


@lru_cache(maxsize=64)
def _compiled(campaign_id: int, version: int, edit_id: int | None, template_id: int, template_updated: str
              ) -> CompiledMessage:
    """The current message compiled: its latest edit, else its template (which a policy cannot change once sent:
    ``campaigns.approvals.template_edit_require``)."""
    campaign = Campaign.objects.select_related("template").get(pk=campaign_id)
    if edit_id is not None:
        change = MessageChange.objects.get(pk=edit_id)
        kind, text, card = change.kind, change.text, change.card
    else:
        kind, text, card = campaign.template.kind, campaign.template.text or "", campaign.template.card
    ask: Ask | None = ask_of(public_id=campaign.public_id, version=version, mode=campaign.acknowledgement)
    kind, text, card = content_asking(kind=kind, text=text, card=card, ask=ask)
    return compile_message(kind=kind, text=text, card=card)


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
