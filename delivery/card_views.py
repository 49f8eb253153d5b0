"""What a person does with a message's card (acknowledge it, answer its poll) and the card they see after: the
person's message found from a button's data, and their view of it (bots.services hands each invoke to
``delivery.acknowledgements``, ``delivery.polls`` or, for a refresh, ``card_refresh``).

Whose press it is, Teams says: the invoke's sender, whose token Crier checked, and which message's card it was
(``replyToId``). The button's data only names the campaign and the version of its message; the person's row is
found from the two (its id is campaign and person: ``delivery.models``), and counts only when the message was sent
to them, is the card pressed, and is still theirs (not recalled).

An acknowledgement reads the campaign's row with a share lock held to the end of its transaction (``FOR KEY SHARE``,
which only an edit's lock conflicts with): a policy's edit waits for the acknowledgements under way, and those that
follow see its version; they never wait for each other, and one that finds an edit under way asks the person to press
again at once (``NOWAIT``). A poll's answer does not depend on the message's version and takes no lock, nor does a
refresh, sent each time Teams shows the card.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from campaigns.card_actions import (
    Ask, Poll, ask_of, card_acknowledged, card_answered, card_asking_again, content_asking, poll_of,
)
from campaigns.models import Campaign, Recipient
from campaigns.rendering import CompiledMessage, compile_message

from .clicks import card_tracked
from .models import (
    PERSON_BITS, Acknowledgement, MessageChange, PollAnswer, campaign_recalled_sql, delivery_recalled_sql,
    entra_object_id,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """What Crier answers a press or a refresh with: the card the person sees now, or why there is none."""

    status: int  # 200, or 400 / 403 / 404 as the invoke's statusCode
    card: dict[str, Any] | None = None
    code: str = ""
    message: str = ""
    acknowledged_at: datetime | None = field(default=None, compare=False)
    recorded: bool = False  # this press recorded something
    closed: bool = False  # the poll it answered had closed: nothing was recorded


BAD = Answer(400, code="BadRequest", message="This button does not name a message of Crier's.")
NOT_FOUND = Answer(404, code="NotFound", message="This message no longer asks anything of you.")
NOT_YOURS = Answer(403, code="Forbidden", message="This message was not sent to you, so you cannot answer it.")


@dataclass
class Target:
    """The person's message a press or a refresh is about. A follow-up's message (``delivery.follow_ups``) asks on
    behalf of the campaign it follows: what the person does is recorded on their row of that campaign
    (``campaign_id``, ``delivery_id``), and the card they see is the follow-up's own (``message_campaign_id``,
    ``message_delivery_id``). For a campaign's own message, both are the same."""

    campaign_id: int
    ask: Ask
    version: int  # the version the card pressed was of
    person: Recipient
    delivery_id: int
    acknowledged_at: datetime | None
    track_clicks: bool = False
    message_campaign_id: int = 0
    message_delivery_id: int = 0
    message_version: int = 0  # a follow-up's own message's version: what its links lead through
    # What the message's card is drawn from now: its latest edit's id (None before any), its template's id and when
    # the template last changed.
    drawn_from: tuple[int | None, int, str] = (None, 0, "")

    def __post_init__(self) -> None:
        self.message_campaign_id = self.message_campaign_id or self.campaign_id
        self.message_delivery_id = self.message_delivery_id or self.delivery_id

    @property
    def current(self) -> int:
        return self.ask.version

    @property
    def follow_up(self) -> bool:
        return self.message_campaign_id != self.campaign_id

    @property
    def links_version(self) -> int:
        """The version of the message whose links the card leads through."""
        return self.message_version if self.follow_up else self.ask.version


# The campaign a card names, the one it asks for (itself, or the campaign it follows up), and in the same statement the
# person (by the token's Entra object id), their message of the card's campaign (with whether a recall took it back:
# ``delivery.models.delivery_recalled``), their row of the campaign asked for (with whether that campaign was
# recalled: ``campaign_recalled``), and what the card is drawn from now (the message's latest edit, its template): one
# round trip finds all a press needs.
_RECIPIENT_FIELDS = list(Recipient._meta.concrete_fields)
assert _RECIPIENT_FIELDS[0].primary_key  # never null on a person found: the lookup's test of whether one was
_ASKING = "campaigns_campaign AS c JOIN campaigns_campaign AS asking ON asking.id = COALESCE(c.follows_id, c.id)"
_TARGET = f"""
SELECT c.id, asking.id, asking.acknowledgement, asking.message_version, asking.poll_question, asking.poll_options,
       asking.poll_multiple, asking.poll_closes_at, c.track_clicks, c.message_version,
       m.id, m.acknowledged_at, m.activity_id, {delivery_recalled_sql("m.id")},
       a.id, a.acknowledged_at, {campaign_recalled_sql("asking.id")},
       (SELECT e.id FROM delivery_messagechange AS e WHERE e.campaign_id = c.id AND e.action = 'edit'
         ORDER BY e.id DESC LIMIT 1),
       c.template_id, t.updated_at,
       {", ".join(f"r.{field.column}" for field in _RECIPIENT_FIELDS)}
  FROM {_ASKING}
  JOIN campaigns_messagetemplate AS t ON t.id = c.template_id
  LEFT JOIN campaigns_recipient AS r ON r.aad_object_id = %(aad)s
  LEFT JOIN delivery_delivery AS m ON m.id = c.id * {1 << PERSON_BITS} + r.id AND m.status = 'sent'
  LEFT JOIN delivery_delivery AS a ON a.id = asking.id * {1 << PERSON_BITS} + r.id
 WHERE c.public_id = %(campaign)s AND (asking.acknowledgement <> '' OR asking.poll_question <> '')
"""
# An acknowledgement's share lock on the campaign asked for, taken by a statement of its own before the lookup: a
# statement sees what had committed when it started, and only the row it locks is read again once the lock is had,
# so a lookup that took the lock itself could pair an edit's version with what the edit had since cleared.
_LOCK = f"SELECT asking.id FROM {_ASKING} WHERE c.public_id = %s FOR KEY SHARE OF asking NOWAIT"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's answer to NOWAIT when the row is locked
BUSY = Answer(503, code="ServiceUnavailable", message="This message is being changed: press again in a moment.")


def target_find(*, aad_object_id: str, data: Any, reply_to: str | None, lock: bool) -> Target | Answer:
    """The person's message the button's data names, or the answer that refuses it. ``reply_to`` is the activity
    id Teams says the card belongs to (None when it did not say): when said, it must be the person's message. With
    ``lock`` (an acknowledgement), call within a transaction, before anything else in it: the campaign's row stays
    share-locked until it ends, and a row an edit holds answers at once that the person should press again (no web
    worker waits on it), the transaction then rolled back."""
    found = _campaign_and_version(data)
    if found is None:
        return BAD
    public_id, version = found
    with connection.cursor() as cursor:
        if lock:
            try:
                cursor.execute(_LOCK, [public_id])
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                    transaction.set_rollback(True)  # nothing came before it: the press's transaction ends unused
                    return BUSY
                raise
        cursor.execute(_TARGET, {"campaign": public_id, "aad": entra_object_id(aad_object_id)})
        row = cursor.fetchone()
    if row is None:
        return NOT_FOUND
    (message_campaign_id, campaign_id, mode, current, question, options, multiple, closes_at, track_clicks,
     message_version, message_id, message_acknowledged_at, activity_id, message_recalled, delivery_id,
     acknowledged_at, campaign_is_recalled, edit_id, template_id, template_updated) = row[:20]
    if row[20] is None:  # nobody of that name: the recipient's id is never null
        return NOT_YOURS
    person = _recipient(row[20:])
    if message_id is None or message_recalled:
        return NOT_YOURS
    if reply_to is not None and reply_to != activity_id:  # a card of another message naming this one
        logger.warning("a press on message %s named message %s of campaign %s: refused", reply_to[:40],
                       activity_id, message_campaign_id)
        return NOT_YOURS
    if campaign_id == message_campaign_id:
        delivery_id, acknowledged_at = message_id, message_acknowledged_at
    elif delivery_id is None or campaign_is_recalled:  # a follow-up's: the campaign it follows records it
        return NOT_YOURS  # that campaign was recalled: from everyone, whomever it had reached
    if isinstance(options, str):  # jsonb read by raw SQL arrives as text
        options = json.loads(options)
    poll = poll_of(question=question, options=options, multiple=multiple, closes_at=closes_at)
    ask = ask_of(public_id=public_id, version=current, mode=mode, poll=poll)
    assert ask is not None  # the query asked for a campaign that asks something
    return Target(campaign_id, ask, version, person, delivery_id, acknowledged_at, track_clicks,
                  message_campaign_id=message_campaign_id, message_delivery_id=message_id,
                  message_version=message_version,
                  drawn_from=(edit_id, template_id, template_updated.isoformat()))


def _campaign_and_version(data: Any) -> tuple[uuid.UUID, int] | None:
    if not isinstance(data, dict):
        return None
    try:
        public_id = uuid.UUID(str(data.get("campaign")))
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            return None
        version = int(version)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None
    return (public_id, version) if 0 < version < 2**31 else None


def _recipient(values: tuple) -> Recipient:
    """The person from their row's columns, each converted as the ORM converts it (a JSON field read by raw SQL
    arrives as text)."""
    converted = []
    for value, (column, converters) in zip(values, _recipient_converters()):
        for convert in converters:
            value = convert(value, column, connection)
        converted.append(value)
    return Recipient.from_db(connection.alias, [each.attname for each in _RECIPIENT_FIELDS], converted)


@lru_cache(maxsize=1)
def _recipient_converters() -> list[tuple[Any, list]]:
    """Each column of the person's row with the ORM's converters for it (the database's, then the field's)."""
    columns = [field.get_col(Recipient._meta.db_table) for field in _RECIPIENT_FIELDS]
    return [(column, connection.ops.get_db_converters(column) + field.get_db_converters(connection))
            for field, column in zip(_RECIPIENT_FIELDS, columns)]


def card_view(target: Target) -> dict[str, Any]:
    """The card as the person should see it now: their own, of the message's current version, with what they did."""
    ask = target.ask
    card = _card(target)
    if ask.mode:
        if target.acknowledged_at is not None:
            card = card_acknowledged(card, at=target.acknowledged_at, ask=ask)
        elif ask.mode == Campaign.Acknowledgement.POLICY and Acknowledgement.objects.filter(
                delivery_id=target.delivery_id).exists():
            card = card_asking_again(card, ask=ask)
    if ask.poll is not None:
        answer = PollAnswer.objects.filter(delivery_id=target.delivery_id).values_list(
            "choices", "answered_at", "changed_at").first()
        chosen, answered_at, changed_at = answer if answer else ((), None, None)
        card = card_answered(card, ask=ask, chosen=tuple(chosen), at=changed_at or answered_at, now=timezone.now())
    if target.track_clicks:  # the links lead through Crier, as in the card sent
        card = card_tracked(card, delivery_id=target.message_delivery_id, version=target.links_version)
    return card


def card_refresh(*, aad_object_id: str, data: Any, reply_to: str | None) -> Answer:
    """Teams asks for the card as the person should see it now (the card's ``refresh``), each time it shows it:
    nothing is recorded, and nothing locked (a view read in the instant an edit commits is put right by the next)."""
    target = target_find(aad_object_id=aad_object_id, data=data, reply_to=reply_to, lock=False)
    if isinstance(target, Answer):
        return target
    return Answer(200, card=card_view(target), acknowledged_at=target.acknowledged_at)


def _card(target: Target) -> dict[str, Any]:
    """The campaign's card as sent to the person in its current version, with what it asks."""
    activity = json.loads(_compiled(target.message_campaign_id, target.ask, *target.drawn_from).render(target.person))
    return activity["attachments"][0]["content"]


@lru_cache(maxsize=64)
def _compiled(campaign_id: int, ask: Ask, edit_id: int | None, template_id: int, template_updated: str
              ) -> CompiledMessage:
    """The current message compiled: its latest edit, else its template (which a policy cannot change once sent:
    ``campaigns.approvals.template_edit_require``)."""
    if edit_id is not None:
        change = MessageChange.objects.get(pk=edit_id)
        kind, text, card = change.kind, change.text, change.card
    else:
        template = Campaign.objects.select_related("template").get(pk=campaign_id).template
        kind, text, card = template.kind, template.text or "", template.card
    kind, text, card = content_asking(kind=kind, text=text, card=card, ask=ask)
    return compile_message(kind=kind, text=text, card=card)


__all__ = ["Answer", "Poll", "Target", "card_refresh", "card_view", "target_find"]
