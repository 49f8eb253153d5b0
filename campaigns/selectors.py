"""Reads: who an audience selects, who opted out, how a campaign is going."""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from .models import Audience, Campaign, Category, OptOut, Recipient
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


def opt_outs_blocking(*, category: Category) -> QuerySet[OptOut]:
    """Opt-outs that stop a message of this category: for a mandatory category only the people
    who blocked the bot (Teams would refuse anyway); otherwise the category's and the global ones."""
    if category.mandatory:
        return OptOut.objects.filter(source=OptOut.Source.BLOCKED)
    return OptOut.objects.filter(Q(category__isnull=True) | Q(category_id=category.pk) | Q(source=OptOut.Source.BLOCKED))


def recipient_is_opted_out(*, recipient_id: int, category: Category) -> bool:
    return opt_outs_blocking(category=category).filter(recipient_id=recipient_id).exists()


def campaign_counts(*, campaign: Campaign) -> dict[str, int]:
    """Deliveries per state, every state present (served by the (campaign, status) index)."""
    from delivery.models import Delivery

    counts = {status: 0 for status in Delivery.Status.values}
    for row in campaign.deliveries.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts
