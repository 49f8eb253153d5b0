"""Approval: an announcement to more than ``APPROVAL_THRESHOLD`` people needs a second person, with
the approver role, before it can be launched or scheduled.

What is approved is the campaign as it stands: changing its template, audience or category (in the
admin or through the API), or editing the template it uses, withdraws the approval, and a scheduled
campaign that loses its approval goes back to draft, visibly, rather than sending unapproved. An
approval also records a fingerprint of the template, audience and category as they were; an edit
of the audience or category itself (its rules, its lists, a category made mandatory) changes it, so
the approval no longer counts. The approver is neither the campaign's author nor the last person
who changed what it says or whom it reaches, and approves what the approval page showed them. An
API key with the ``campaigns:approve`` scope approves the campaigns it launches itself (an
integration the organisation trusts); every approval is in the audit log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .audit import Actor
from .errors import ApplicationError
from .models import ApiKey, Audience, AuditEntry, Campaign, Category, MessageTemplate
from .selectors import audience_count

# Changing one of these after approval withdraws it.
APPROVED_FIELDS = ("template", "template_id", "audience", "audience_id", "category", "category_id")


@dataclass(frozen=True)
class ApprovalState:
    needed: bool  # the audience is above the threshold
    approved: bool  # approved, and what was approved is what it is now
    people: int
    threshold: int
    fingerprint: str  # what an approval given now covers

    @property
    def missing(self) -> bool:
        return self.needed and not self.approved


def approval_fingerprint(*, campaign: Campaign) -> str:
    """What an approval covers: the template, the audience and the category, as they are now."""
    template = MessageTemplate.objects.filter(pk=campaign.template_id).values_list("updated_at", flat=True).first()
    audience = Audience.objects.filter(pk=campaign.audience_id).values_list("updated_at", flat=True).first()
    mandatory = Category.objects.filter(pk=campaign.category_id).values_list("mandatory", flat=True).first()
    parts = [campaign.template_id, template, campaign.audience_id, audience, campaign.category_id, mandatory]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _approved_as_it_stands(campaign: Campaign, fingerprint: str) -> bool:
    return campaign.approved_at is not None and campaign.approved_fingerprint == fingerprint


def approval_state(*, campaign: Campaign, fingerprint: str | None = None) -> ApprovalState:
    threshold = settings.APPROVAL_THRESHOLD
    fingerprint = fingerprint or approval_fingerprint(campaign=campaign)
    approved = _approved_as_it_stands(campaign, fingerprint)
    # Only announcements need approval: a welcome greets one new starter at a time, and a direct
    # message is checked when it is sent (``key_approves``).
    people = audience_count(audience=campaign.audience) if campaign.kind == Campaign.Kind.ANNOUNCEMENT else 0
    return ApprovalState(
        needed=people > threshold, approved=approved, people=people, threshold=threshold, fingerprint=fingerprint
    )


def key_approves(actor: Actor) -> bool:
    """Whether the caller is an API key trusted to approve what it sends itself."""
    return actor.api_key is not None and ApiKey.Scope.CAMPAIGNS_APPROVE in (actor.api_key.scopes or [])


def approval_require(*, campaign: Campaign, actor: Actor) -> None:
    """Raises unless the campaign may be sent as it is. A key with ``campaigns:approve`` approves
    it on the way (called inside the launching transaction, with the campaign row locked)."""
    fingerprint = approval_fingerprint(campaign=campaign)
    if _approved_as_it_stands(campaign, fingerprint):
        return  # no need to count a million people inside the launch
    state = approval_state(campaign=campaign, fingerprint=fingerprint)
    if not state.missing:
        return
    if key_approves(actor):
        _approve(campaign, actor, state)
        return
    again = " changed since it was approved (its template, audience or category), and" if campaign.approved_at else ""
    raise ApplicationError(
        f"“{campaign}”{again} reaches {state.people} people, more than {state.threshold}: a second person with the "
        "approver role must approve it first.",
        code="approval_required",
        status=409,
    )


def campaign_approve(*, campaign_id: int, actor: Actor, seen: str | None = None) -> Campaign:
    """``seen`` is the fingerprint of what the approval page showed: if the campaign, its template,
    audience or category changed since, nothing is approved."""
    user = actor.user
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign.is_editable:
            raise ApplicationError(
                f"“{campaign}” is {campaign.get_status_display().lower()}; only a draft or scheduled campaign is approved.",
                code="invalid_state", status=409,
            )
        state = approval_state(campaign=campaign)
        if state.approved:
            raise ApplicationError(f"“{campaign}” is already approved.", code="invalid_state", status=409)
        if user is None or not user.has_perm("campaigns.approve_campaign"):
            raise ApplicationError("Only a person with the approver role can approve a campaign.", code="forbidden", status=403)
        if user.pk in (campaign.created_by_id, campaign.edited_by_id):
            raise ApplicationError(
                "You wrote or changed this campaign: a second person must approve it.", code="approver_is_author",
                status=403,
            )
        if seen is not None and seen != state.fingerprint:
            raise ApplicationError(
                "The campaign, its template, audience or category changed while you were looking at it: "
                "look at it again before approving.", code="changed", status=409,
            )
        _approve(campaign, actor, state)
    return campaign


def _approve(campaign: Campaign, actor: Actor, state: ApprovalState) -> None:
    campaign.approved_by = actor.user if actor.user is not None else None
    campaign.approved_at = timezone.now()
    campaign.approved_fingerprint = state.fingerprint
    campaign.save(update_fields=["approved_by", "approved_at", "approved_fingerprint", "updated_at"])
    actor.record(
        AuditEntry.Action.APPROVE, campaign=campaign,
        summary=f"Approved “{campaign}” for {state.people} people",
        detail={"people": state.people, "threshold": state.threshold},
    )


def approval_withdraw(*, campaign: Campaign, actor: Actor, reason: str) -> bool:
    """Withdraws the approval of a campaign not sent yet (the caller holds its row). A scheduled
    campaign that now needs approval goes back to draft. Returns whether anything changed."""
    if campaign.approved_at is None or not campaign.is_editable:
        return False
    campaign.approved_by = None
    campaign.approved_at = None
    fields = ["approved_by", "approved_at", "updated_at"]
    unscheduled = campaign.status == Campaign.Status.SCHEDULED and approval_state(campaign=campaign).needed
    if unscheduled:
        campaign.status = Campaign.Status.DRAFT
        campaign.status_reason = f"Back to draft: {reason}; it needs approval again before it is scheduled."
        fields += ["status", "status_reason"]
    campaign.save(update_fields=fields)
    actor.record(
        AuditEntry.Action.APPROVAL_WITHDRAWN, campaign=campaign, summary=f"Approval of “{campaign}” withdrawn: {reason}",
        detail={"unscheduled": unscheduled},
    )
    return True


def approvals_withdraw_for_template(*, template_id: int, actor: Actor) -> int:
    """The template of approved campaigns changed: their approval no longer covers what they say."""
    withdrawn = 0
    with transaction.atomic():
        for campaign in Campaign.objects.select_for_update().filter(
            template_id=template_id, approved_at__isnull=False, status__in=(Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
        ):
            withdrawn += approval_withdraw(campaign=campaign, actor=actor, reason="its template was edited")
    return withdrawn
