"""Whom a follow-up (``delivery.follow_ups``) is for: people of the campaign it follows, chosen from that campaign's
rows and its other follow-ups' as they are when the follow-up's rows are written."""

from __future__ import annotations

from functools import reduce
from operator import or_

from django.db.models import Exists, OuterRef, Q, QuerySet

from campaigns.models import Campaign, Recipient

from .models import PERSON_BITS, Delivery, PollAnswer

Who = Campaign.FollowUp


def follow_up_people(*, campaign: Campaign) -> QuerySet[Recipient]:
    """The active people a follow-up is for, from the rows of the campaign it follows and of that campaign's other
    follow-ups (its "family"): set-based, each condition a probe of the rows' primary key (campaign and person in one
    number), so the engine embeds it in its ``INSERT … SELECT`` (``delivery.materialising``).

    - failed: its message failed for them (not where Teams may have it: an ambiguous failure), and no follow-up has
      sent it to them since;
    - not read: it (or a follow-up) reached them, Teams reported none of those messages read, and they have not
      acknowledged it or answered its poll either;
    - not acknowledged / not answered: it reached them, and they have not acknowledged it / answered its poll (on its
      card or a follow-up's: both count for it)."""
    root = campaign.follows_id
    assert root is not None, "only a follow-up has people of another campaign"
    family = [root, *Campaign.objects.filter(follows_id=root).exclude(pk=campaign.pk).values_list("pk", flat=True)]

    # Each probe names the campaign too, so that the planner keeps to the key (or the campaign's own index) rather
    # than scanning every campaign's rows of a state.
    def own(**state) -> Exists:  # the person's row of the campaign followed
        return Exists(Delivery.objects.filter(pk=OuterRef("pk") + (root << PERSON_BITS), campaign_id=root, **state))

    def any_of(**state) -> Exists:  # any of the person's rows of the family
        probes = reduce(or_, [Q(pk=OuterRef("pk") + (member << PERSON_BITS), campaign_id=member) for member in family])
        return Exists(Delivery.objects.filter(probes, **state))

    answered = Exists(PollAnswer.objects.filter(delivery_id=OuterRef("pk") + (root << PERSON_BITS)))

    people = Recipient.objects.filter(is_active=True)
    reached = any_of(status=Delivery.Status.SENT)
    who = campaign.follow_up_who
    if who == Who.FAILED:  # not where Teams may have it (an ambiguous failure): it would be twice
        return people.filter(own(status=Delivery.Status.FAILED, ambiguous=False)).exclude(reached)
    if who == Who.NOT_READ:  # an acknowledgement or an answer is a read too
        return people.filter(reached).exclude(any_of(read_at__isnull=False)).exclude(
            own(acknowledged_at__isnull=False)).exclude(answered)
    if who == Who.NOT_ACKNOWLEDGED:
        return people.filter(reached).exclude(own(acknowledged_at__isnull=False))
    if who == Who.NOT_ANSWERED:
        return people.filter(reached).exclude(answered)
    raise ValueError(f"a follow-up to {who!r}")
