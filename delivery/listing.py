"""A campaign to an Entra ID group or a Teams team: at its launch Crier lists the members (``campaigns.members``,
the campaign's own listing, kept with it), then writes its rows from that listing.

The launch's listing decides everything after it: what is listed again after a failure (the group or team
the campaign was launched to, whatever its audience became since) and whom the rows are written for. What
can happen once it is listed: the listing failed (no consent, the group was deleted, the bot left the team):
the campaign pauses, saying why, and resuming it lists again; the group holds more people than the campaign
may reach (its approval's count, or the approval threshold): it goes back to draft, nothing written, its
approval void, saying why; otherwise its rows are written (``delivery.materialising``) and sent. One task
decides for a campaign at a time (an advisory lock on the campaign)."""

from __future__ import annotations

from django.db import transaction

from campaigns.approvals import approval_withdraw
from campaigns.audit import SYSTEM
from campaigns.members import campaign_listing, listing_again, listing_run
from campaigns.models import Audience, AuditEntry, Campaign, MemberListing
from campaigns.selectors import campaign_recipients
from campaigns.states import MOVES, move_allowed
from core.locks import advisory_lock

from . import jobs
from .control import campaign_pause_saying
from .reach import reach_limit

CAMPAIGN_LISTING_LOCK = 0x6C697363  # the advisory lock's first key; the second is the campaign's id


def campaign_members_list(*, campaign_id: int) -> str:
    """Lists the members of a launched campaign's group or team (again, after a failure), then writes its rows,
    or says why not. Returns what it did."""
    with advisory_lock(CAMPAIGN_LISTING_LOCK, campaign_id) as held:
        return _members_list(campaign_id) if held else "listed by another task"


def _members_list(campaign_id: int) -> str:
    campaign = Campaign.objects.get(pk=campaign_id)
    listing = campaign_listing(campaign=campaign)
    if listing is None or campaign.materialised_at is not None or campaign.status not in (
            Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        return "not needed"
    if listing.status != MemberListing.Status.SUCCEEDED:
        if campaign.status != Campaign.Status.RUNNING:
            return "paused"  # its resume lists again
        if listing.status == MemberListing.Status.FAILED:
            listing = listing_again(listing)
        if listing_run(listing_id=listing.pk) is None:
            return "listed by another task"
        listing.refresh_from_db()
        campaign.refresh_from_db()
    if listing.status == MemberListing.Status.FAILED:
        campaign_pause_saying(campaign_id=campaign.pk, reason=(
            f"Could not list the members of {_named(listing)}: {listing.error} Resume it to list them again.")[:500])
        return "failed"
    if campaign.status == Campaign.Status.CANCELLED or campaign.total_deliveries:
        return "listed before"  # cancelled, or its rows are being written (the reconciler restarts a lost writing)
    people = campaign_recipients(campaign=campaign).count()
    limit = reach_limit(campaign=campaign)
    if limit is not None and people > limit:
        return "back to draft" if _back_to_draft(campaign_id, listing, people, limit) else "not moved"
    jobs.materialise(campaign_id, 0)
    return "listed"


def _named(listing: MemberListing) -> str:
    what = "the group" if listing.kind == Audience.Kind.ENTRA_GROUP else "the team"
    return f"{what} “{listing.source_name}”" if listing.source_name else f"{what} {listing.source_id}"


def _back_to_draft(campaign_id: int, listing: MemberListing, people: int, limit: int) -> bool:
    """Nothing of it written yet: back to draft, its approval void, its listing kept as the audience's latest
    look (what the approver sees next). Returns whether it moved."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not move_allowed(campaign, "unlaunch") or campaign.total_deliveries:
            return False
        approved = campaign.approved_at is not None
        covered = f"the {limit:,} people it was approved for" if approved else (
            f"{limit:,} people, above which a campaign needs approval")
        reason = (f"Back to draft, nothing sent: listed at its launch, {_named(listing)} holds {people:,} people, more "
                  f"than {covered}. A person with the approver role must approve it for them first.")[:500]
        campaign.status = MOVES["unlaunch"].target
        campaign.launched_at = None
        campaign.status_reason = reason
        campaign.save(update_fields=["status", "launched_at", "status_reason", "updated_at"])
        MemberListing.objects.filter(campaign=campaign).update(campaign=None)  # a relaunch lists anew
        SYSTEM.record(AuditEntry.Action.UNLAUNCH, campaign=campaign, summary=reason,
                      detail={"people": people, "limit": limit, "kind": listing.kind, "source_id": listing.source_id})
        if approved:
            approval_withdraw(campaign=campaign, actor=SYSTEM, reason=reason, outgrown=True)
    return True

