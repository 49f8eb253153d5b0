"""A campaign to an Entra ID group or a Teams team: at its launch Crier lists the members (``campaigns.members``,
the campaign's own listing, kept with it), then writes its rows from that listing.

What can happen once listed: the listing failed (no consent, the group was deleted, the bot left the team):
the campaign pauses, saying why, and resuming it lists again; the group holds more people than the campaign
may reach (its approval's count, or the approval threshold): it goes back to draft, nothing written, its
approval void, saying why; otherwise its rows are written (``delivery.materialising``) and sent."""

from __future__ import annotations

import logging

from django.db import transaction

from campaigns.approvals import approval_withdraw
from campaigns.audit import SYSTEM
from campaigns.members import campaign_listing, listing_run, listing_start
from campaigns.models import Audience, Campaign, MemberListing
from campaigns.selectors import campaign_recipients
from campaigns.states import MOVES, move_allowed
from core.errors import ApplicationError

from . import jobs
from .control import campaign_pause
from .reach import reach_limit

logger = logging.getLogger(__name__)


def listed_audience(campaign: Campaign) -> bool:
    return campaign.audience is not None and campaign.audience.kind in Audience.LISTED_KINDS


def campaign_members_list(*, campaign_id: int) -> str:
    """Lists the members for a running campaign, then writes its rows, or says why not. Returns what it did."""
    campaign = Campaign.objects.select_related("audience").get(pk=campaign_id)
    if campaign.status != Campaign.Status.RUNNING or campaign.materialised_at is not None or not listed_audience(campaign):
        return "not needed"
    listing = campaign_listing(campaign=campaign)
    if listing is not None and listing.status == MemberListing.Status.SUCCEEDED:
        return "listed before"  # its rows are being written (the reconciler restarts a writing that was lost)
    if listing is None or listing.status == MemberListing.Status.FAILED:
        listing = listing_start(audience=campaign.audience, campaign=campaign)
    if listing_run(listing_id=listing.pk) is None:
        return "listed by another task"
    listing.refresh_from_db()
    if listing.status == MemberListing.Status.FAILED:
        _pause(campaign, f"Could not list the members of {_named(listing)}: {listing.error} Resume it to list them again.")
        return "failed"
    people = campaign_recipients(campaign=campaign).count()
    limit = reach_limit(campaign=campaign)
    if limit is not None and people > limit:
        _back_to_draft(campaign_id, listing, people, limit)
        return "outgrown"
    jobs.materialise(campaign_id, 0)
    return "listed"


def _named(listing: MemberListing) -> str:
    what = "the group" if listing.kind == Audience.Kind.ENTRA_GROUP else "the team"
    return f"{what} “{listing.source_name}”" if listing.source_name else f"{what} {listing.source_id}"


def _pause(campaign: Campaign, reason: str) -> None:
    try:
        campaign_pause(campaign_id=campaign.pk, reason=reason[:500])
    except ApplicationError:  # paused or cancelled meanwhile: the reason is still worth showing
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PAUSED).update(status_reason=reason[:500])


def _back_to_draft(campaign_id: int, listing: MemberListing, people: int, limit: int) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not move_allowed(campaign, "unlaunch") or campaign.total_deliveries:
            return
        approved = campaign.approved_at is not None
        covered = f"the {limit:,} people it was approved for" if approved else (
            f"{limit:,} people, above which a campaign needs approval")
        reason = (f"Back to draft, nothing sent: listed at its launch, {_named(listing)} holds {people:,} people, more "
                  f"than {covered}. A person with the approver role must approve it for them first.")
        campaign.status = MOVES["unlaunch"].target
        campaign.launched_at = None
        campaign.status_reason = reason[:500]
        campaign.save(update_fields=["status", "launched_at", "status_reason", "updated_at"])
        if approved:  # recorded in the audit trail, with the reason
            approval_withdraw(campaign=campaign, actor=SYSTEM, reason=reason, outgrown=True)
