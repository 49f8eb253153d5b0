"""Clicks: who opened the link buttons of a message, for a campaign that counts them (``Campaign.track_clicks``, off
by default: people's clicks are theirs).

Each ``Action.OpenUrl`` of the card a person is sent (in its actions, action sets and select actions, numbered in
the card's order, 0 first) leads to Crier instead: ``{PUBLIC_BASE_URL}/c/<token>``, the token signed with the
site's key for that delivery and link, holding the address the button had for that person. Opened, Crier counts
the click and sends the browser on (``click_follow``). The token names the one person's delivery: only someone who
was sent the message holds a link, a link cannot be made for another person or another address (the signature),
and a link of a message that was recalled no longer leads anywhere. Links written inside the text are not counted.

Counted once a person and link (``Click``, with how often and when): ``clicked`` is the people who opened any link,
``click:<n>`` those who opened link n, in the campaign's Redis counters, moved once the click has committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.urls import reverse

from . import progress
from .models import Delivery, DeliveryChange, MessageChange

SALT = "crier.click"
CARD = "application/vnd.microsoft.card.adaptive"


def open_urls(card: Any) -> Iterator[dict[str, Any]]:
    """The card's ``Action.OpenUrl`` actions with a web address, in the card's order: the links Crier counts."""
    stack = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Action.OpenUrl" and isinstance(node.get("url"), str) and \
                    node["url"].lower().startswith(("https://", "http://")):
                yield node
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def link_for(*, delivery_id: int, link: int, target: str) -> str:
    """The signed link to Crier that counts this person's click on link ``link`` and leads to ``target``."""
    token = signing.dumps([delivery_id, link, target], salt=SALT, compress=True)
    return f"{settings.PUBLIC_BASE_URL}{reverse('click', args=[token])}"


def card_tracked(card: dict[str, Any], *, delivery_id: int) -> dict[str, Any]:
    """The card (changed in place) with each link button leading through Crier for this delivery."""
    if settings.PUBLIC_BASE_URL:  # without it there is no address to lead through: the links stay as they are
        for n, action in enumerate(open_urls(card)):
            action["url"] = link_for(delivery_id=delivery_id, link=n, target=action["url"])
    return card


def activity_tracked(body: bytes, *, delivery_id: int) -> bytes:
    """A rendered message activity with its card's links leading through Crier for this delivery."""
    activity = json.loads(body)
    for attachment in activity.get("attachments") or []:
        if isinstance(attachment, dict) and attachment.get("contentType") == CARD and isinstance(
                attachment.get("content"), dict):
            card_tracked(attachment["content"], delivery_id=delivery_id)
    return json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


RECORD = """
INSERT INTO delivery_click (delivery_id, link, clicks, first_at, last_at)
VALUES (%(delivery)s, %(link)s, 1, now(), now())
ON CONFLICT (delivery_id, link) DO UPDATE SET clicks = delivery_click.clicks + 1, last_at = now()
RETURNING (xmax = 0)
"""


def click_follow(token: str) -> str | None:
    """Counts the click a signed link stands for and returns where it leads, or None: a token Crier did not sign, or
    of a message that is no longer the person's (not sent, or recalled)."""
    try:
        delivery_id, link, target = signing.loads(token, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not (isinstance(delivery_id, int) and isinstance(link, int) and isinstance(target, str)) or not \
            target.lower().startswith(("https://", "http://")):
        return None
    with transaction.atomic():
        # The person's clicks one after the other: each sees whether one before it counted them already.
        delivery = Delivery.objects.select_for_update(no_key=True).filter(
            pk=delivery_id, status=Delivery.Status.SENT).only("id", "campaign_id").first()
        if delivery is None or DeliveryChange.objects.filter(
                delivery_id=delivery_id, status=DeliveryChange.Status.DONE,
                change__action=MessageChange.Action.RECALL).exists():
            return None
        with connection.cursor() as cursor:
            cursor.execute(RECORD, {"delivery": delivery_id, "link": link})
            first_of_link = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM delivery_click WHERE delivery_id = %s", [delivery_id])
            first_of_person = first_of_link and cursor.fetchone()[0] == 1
        moves = {**({f"{progress.CLICK}{link}": 1} if first_of_link else {}), **({"clicked": 1} if first_of_person else {})}
        if moves:
            campaign_id = delivery.campaign_id
            transaction.on_commit(lambda: progress.record(campaign_id, **moves))
    return target
