"""Whom a follow-up (``delivery.follow_ups``) is for: people of the campaign it follows, chosen from that campaign's
rows and its other follow-ups' as they are when the follow-up's rows are written; and whether it may go when it is
launched."""

from __future__ import annotations

from functools import reduce
from operator import or_

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from core.errors import ApplicationError

from .models import PERSON_BITS, Delivery, DeliveryChange, MessageChange, PollAnswer, campaign_recalled

Who = Campaign.FollowUp
S = Campaign.Status
UNENDED = (Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.RETRYING)
SENDING = (S.SCHEDULED, S.RUNNING, S.PAUSED)  # a follow-up that will send, or sends: another waits for it


def follow_up_people(*, campaign: Campaign) -> QuerySet[Recipient]:
    """The active people a follow-up is for, from the rows of the campaign it follows and of that campaign's other
    follow-ups (its "family"): set-based, each condition a probe of the rows' primary key (campaign and person in one
    number), so the engine embeds it in its ``INSERT … SELECT`` (``delivery.materialising``).

    - failed: its message failed for them (not where Teams may have it: an ambiguous failure), and no follow-up has
      sent it to them since, may have, or still sends it;
    - not read: it (or a follow-up) reached them (a message taken back by a recall reached nobody), Teams reported none of those messages read, and they have not
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

    def any_of(*conditions, **state) -> Exists:  # any of the person's rows of the family
        probes = reduce(or_, [Q(pk=OuterRef("pk") + (member << PERSON_BITS), campaign_id=member) for member in family])
        return Exists(Delivery.objects.filter(probes, *conditions, **state))

    taken_back = Exists(DeliveryChange.objects.filter(delivery_id=OuterRef("pk"), status=DeliveryChange.Status.DONE,
                                                      change__action=MessageChange.Action.RECALL))

    answered = Exists(PollAnswer.objects.filter(delivery_id=OuterRef("pk") + (root << PERSON_BITS)))

    people = Recipient.objects.filter(is_active=True)
    reached = any_of(~taken_back, status=Delivery.Status.SENT)  # and they have it still
    who = campaign.follow_up_who
    if who == Who.FAILED:
        # Not where Teams may have it (an ambiguous failure, a message still on its way, a follow-up's too): it would
        # be twice.
        may_have_it = any_of(Q(status=Delivery.Status.SENT) | Q(ambiguous=True) | Q(status__in=UNENDED))
        return people.filter(own(status=Delivery.Status.FAILED, ambiguous=False)).exclude(may_have_it)
    if who == Who.NOT_READ:  # an acknowledgement or an answer is a read too
        return people.filter(reached).exclude(any_of(read_at__isnull=False)).exclude(
            own(acknowledged_at__isnull=False)).exclude(answered)
    if who == Who.NOT_ACKNOWLEDGED:
        return people.filter(reached).exclude(own(acknowledged_at__isnull=False))
    if who == Who.NOT_ANSWERED:
        return people.filter(reached).exclude(answered)
    raise ValueError(f"a follow-up to {who!r}")


def follow_up_launch_require(*, campaign: Campaign) -> None:
    """Raises unless a follow-up may go now (called by its launch, which holds its row): the campaign it follows was
    not recalled, no other follow-up of it sends, and a reminder to answer has a poll still open. A follow-up made
    as a draft is launched later, when this may no longer hold."""
    root = Campaign.objects.select_for_update(no_key=True, of=("self",)).get(pk=campaign.follows_id)
    recalled_refuse(root)
    sending = root.follow_ups.filter(status__in=SENDING).exclude(pk=campaign.pk).first()
    if sending is not None:
        raise ApplicationError(f"“{sending}” follows “{root}” and has not ended: wait for it.", code="follow_up_open",
                               status=409)
    poll_closed_refuse(root, campaign.follow_up_who)


def recalled_refuse(root: Campaign) -> None:
    """Raises once the campaign was recalled: nothing of it goes any more, a follow-up neither (made or launched)."""
    if campaign_recalled(root.pk):
        raise ApplicationError(f"“{root}” was recalled: nothing of it is sent any more.", code="invalid_state",
                               status=409)


def poll_closed_refuse(root: Campaign, who: str) -> None:
    """Raises for a reminder to answer a poll that has closed (made or launched)."""
    if who == Who.NOT_ANSWERED and root.poll_closes_at is not None and root.poll_closes_at <= timezone.now():
        raise ApplicationError(f"The poll of “{root}” has closed: nobody can answer it now.", code="poll_closed",
                               status=409)
