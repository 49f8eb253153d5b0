"""What an announcement may reach once launched: the people its approval showed or, not approved,
``APPROVAL_THRESHOLD`` (a follow-up: the people of the campaign it follows). The launch's first rows and the
task that writes the rest stop there, so people moved into the audience after the approval (or the launch's count)
are not sent to."""

from __future__ import annotations

from django.conf import settings

from campaigns.approvals import ApprovalOutgrown
from campaigns.models import Campaign
from core.errors import ApplicationError

from .control import campaign_pause_saying


def reach_limit(*, campaign: Campaign) -> int | None:
    """How many people an announcement's rows may hold: the number its approval showed or, not
    approved, ``APPROVAL_THRESHOLD`` (above it, it would have needed approval). None: no limit (an
    approval given before approvals counted people)."""
    if campaign.kind != Campaign.Kind.ANNOUNCEMENT:
        return None
    if campaign.follows_id is not None:
        # A follow-up (delivery.follow_ups) reaches some of the people the campaign it follows wrote rows for, with
        # that campaign's approval or its own (which showed as many).
        return Campaign.objects.filter(pk=campaign.follows_id).values_list("total_deliveries", flat=True).get()
    if campaign.approved_at is not None:
        return campaign.approved_people
    return settings.APPROVAL_THRESHOLD


def require_within_reach(*, campaign: Campaign, rows: int) -> None:
    """The launch's first rows are written by another statement than the one that counted the
    audience for its approval: people added in between would reach past it. Raises (the launch
    rolls back) if they did."""
    limit = reach_limit(campaign=campaign)
    if limit is None or rows <= limit:
        return
    if campaign.approved_at is not None:
        raise ApprovalOutgrown(
            f"“{campaign}” was approved for {limit} people and now reaches {rows}: the approval is void, and a "
            "person with the approver role must approve it again.", code="approval_required", status=409,
        )
    raise ApplicationError(
        f"“{campaign}” now reaches {rows} people, more than {limit}: a second person with the approver role must "
        "approve it first.", code="approval_required", status=409,
    )


def pause_outgrown(*, campaign: Campaign) -> None:
    """The audience grew past what the campaign may reach while its rows were written: nobody more
    is written (its materialisation ends), and it pauses, saying why; the people written are sent
    when it is resumed."""
    limit = reach_limit(campaign=campaign)
    covered = (
        f"the {limit} people it was approved for" if campaign.approved_at is not None
        else f"{limit} people, above which a campaign needs approval"
    )
    written = Campaign.objects.filter(pk=campaign.pk).values_list("total_deliveries", flat=True).get()
    reason = (
        f"Paused while its people were being written: its audience grew past {covered}. Only the {written} "
        "people written before are sent when it is resumed, nobody more; to reach the others, make a new "
        "campaign and have it approved."
    )
    campaign_pause_saying(campaign_id=campaign.pk, reason=reason)
