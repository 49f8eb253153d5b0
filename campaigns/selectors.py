"""Reads: who an audience selects and whose opt-outs stop a message (a campaign's progress is
``delivery.progress``)."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from .models import Audience, Recipient
from .rules import rules_to_q


def audience_recipients(*, audience: Audience | None) -> QuerySet[Recipient]:
    """The active people an audience selects right now (``None``: everyone active)."""
    people = Recipient.objects.filter(is_active=True)
    if audience is None or audience.kind == Audience.Kind.EVERYONE:
        pass
    elif audience.kind == Audience.Kind.STATIC:
        people = people.filter(Exists(Audience.members.through.objects.filter(audience_id=audience.pk, recipient_id=OuterRef("pk"))))
    else:
        people = people.filter(rules_to_q(audience.rules or []))
    if audience is not None and audience.pk:
        people = people.exclude(
            Exists(Audience.excluded.through.objects.filter(audience_id=audience.pk, recipient_id=OuterRef("pk")))
        )
    return people


def audience_count(*, audience: Audience | None) -> int:
    return audience_recipients(audience=audience).count()


def opted_out_sql(*, recipient: str, mandatory: str, category: str) -> str:
    """SQL that is true when a person's opt-outs stop a message of a category: for a mandatory
    category only having blocked the bot does (Teams would refuse anyway); otherwise also an opt-out
    of everything or of that category. The arguments are SQL expressions (columns or placeholders);
    the engine embeds this in its set-based statements."""
    return (
        "EXISTS (SELECT 1 FROM campaigns_optout o"
        f" WHERE o.recipient_id = {recipient}"
        f" AND (o.source = 'blocked' OR (NOT {mandatory} AND (o.category_id IS NULL OR o.category_id = {category}))))"
    )
