"""Clicks: who opened the link buttons of a message, for a campaign that counts them (``Campaign.track_clicks``, off
by default: people's clicks are theirs).

Each ``Action.OpenUrl`` of the card a person is sent (in its actions, action sets and select actions, numbered in
the card's order, 0 first; Teams' own deep links, which Teams opens inside itself, are left as they are) leads to
Crier instead: ``{PUBLIC_BASE_URL}/c/<token>``, the token signed with the site's key and naming only the delivery,
the version of the message and the button. Where it leads is worked out when it is opened, from that version of
the message as sent to that person (``click_follow``): the link carries no address and none of the person's values,
leads only to a button of a message Crier sent, and a link of a message that was recalled leads nowhere. Links
written inside the text are not counted.

Counted once a person and button (``Click``, with how often and when): ``clicked`` is the people who opened any
button, ``click:<n>`` those who opened button n, in the campaign's Redis counters, moved once the click has
committed. Counting is best effort: the person is sent on even when it could not be recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from campaigns.models import Campaign, Recipient
from campaigns.rendering import compile_message

from . import progress
from .models import PERSON_BITS, MessageChange, delivery_recalled

logger = logging.getLogger(__name__)
SALT = "crier.click"
CARD = "application/vnd.microsoft.card.adaptive"
IN_TEAMS = ("https://teams.microsoft.com/l/", "https://teams.cloud.microsoft/l/")  # deep links Teams opens itself


def open_urls(card: Any) -> Iterator[dict[str, Any]]:
    """The card's ``Action.OpenUrl`` actions with a web address, in the card's order: the buttons Crier counts."""
    stack = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            url = node.get("url")
            if node.get("type") == "Action.OpenUrl" and isinstance(url, str) and \
                    url.lower().startswith(("https://", "http://")) and not url.lower().startswith(IN_TEAMS):
                yield node
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def link_for(*, delivery_id: int, version: int, link: int) -> str:
    """The signed link to Crier that counts this person's click on button ``link`` of that version of the message."""
    token = signing.dumps([delivery_id, version, link], salt=SALT)
    return f"{settings.PUBLIC_BASE_URL}{reverse('click', args=[token])}"


def card_tracked(card: dict[str, Any], *, delivery_id: int, version: int) -> dict[str, Any]:
    """The card (changed in place) with each button leading through Crier for this delivery and version."""
    if settings.PUBLIC_BASE_URL:  # without it there is no address to lead through: the links stay as they are
        for n, action in enumerate(open_urls(card)):
            action["url"] = link_for(delivery_id=delivery_id, version=version, link=n)
    return card


def activity_tracked(body: bytes, *, delivery_id: int, version: int) -> bytes:
    """A rendered message activity with its card's buttons leading through Crier for this delivery."""
    activity = json.loads(body)
    for attachment in activity.get("attachments") or []:
        if isinstance(attachment, dict) and attachment.get("contentType") == CARD and isinstance(
                attachment.get("content"), dict):
            card_tracked(attachment["content"], delivery_id=delivery_id, version=version)
    return json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _target(delivery_id: int, version: int, link: int) -> str | None:
    """Where button ``link`` of that version of the campaign's message led the person: the version's content (the
    template for the first, which a launched campaign that counts clicks keeps; the edit that made each later one)
    rendered for them."""
    campaign = Campaign.objects.filter(pk=delivery_id >> PERSON_BITS, track_clicks=True).select_related(
        "template").first()
    person = Recipient.objects.filter(pk=delivery_id & ((1 << PERSON_BITS) - 1)).first()
    if campaign is None or person is None or not 0 < version <= campaign.message_version:
        return None
    if version == 1:
        kind, text, card = campaign.template.kind, campaign.template.text or "", campaign.template.card
    else:
        edit = campaign.message_changes.filter(action=MessageChange.Action.EDIT).order_by("id")[version - 2:version - 1]
        change = edit.first()
        if change is None:
            return None
        kind, text, card = change.kind, change.text, change.card
    activity = json.loads(compile_message(kind=kind, text=text, card=card).render(person))
    content = next((a.get("content") for a in activity.get("attachments") or [] if isinstance(a, dict)), None)
    buttons = list(open_urls(content or {}))
    return buttons[link]["url"] if 0 <= link < len(buttons) else None


RECORD = """
INSERT INTO delivery_click (delivery_id, link, clicks, first_at, last_at)
VALUES (%(delivery)s, %(link)s, 1, now(), now())
ON CONFLICT (delivery_id, link) DO UPDATE SET clicks = delivery_click.clicks + 1, last_at = now()
RETURNING (xmax = 0)
"""


def click_follow(token: str) -> str | None:
    """Counts the click a signed link stands for and returns where it leads, or None: a token Crier did not sign,
    a button that is not there, or a message that was recalled."""
    try:
        delivery_id, version, link = signing.loads(token, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (delivery_id, version, link)):
        return None
    if delivery_recalled(delivery_id):
        return None
    target = _target(delivery_id, version, link)
    if target is None or not target.lower().startswith(("https://", "http://")):
        return None
    try:
        _record(delivery_id, link)
    except DatabaseError:  # the person is sent on all the same: counting is not worth a broken button
        logger.exception("a click on delivery %s could not be counted", delivery_id)
    return target


def _record(delivery_id: int, link: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        # The person's clicks one after the other: each sees whether one before it counted them already.
        cursor.execute("SELECT 1 FROM delivery_delivery WHERE id = %s FOR NO KEY UPDATE", [delivery_id])
        if cursor.fetchone() is None:
            return
        cursor.execute(RECORD, {"delivery": delivery_id, "link": link})
        first_of_link = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM delivery_click WHERE delivery_id = %s", [delivery_id])
        first_of_person = first_of_link and cursor.fetchone()[0] == 1
        moves = {**({f"{progress.CLICK}{link}": 1} if first_of_link else {}),
                 **({"clicked": 1} if first_of_person else {})}
        if moves:
            campaign_id = delivery_id >> PERSON_BITS
            transaction.on_commit(lambda: progress.record(campaign_id, **moves))
