"""“Request approval”: an author asks the approvers to look at a campaign that needs approval. It is
then on their list (the campaign list's “Waiting for approval” filter), and each approver who linked
who they are in Teams (My profile) gets a message from Crier's bot with a link to the approval page,
sent as a direct message, so it is paced and retried like any other."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from campaigns.approvals import approval_state, campaign_changers
from campaigns.audit import SYSTEM, Actor
from campaigns.models import AuditEntry, Campaign, Category, MessageTemplate, StaffProfile
from campaigns.states import move_require
from core.errors import ApplicationError

from .services import campaign_send_direct

CATEGORY_SLUG = "crier-approvals"
REQUEST_AGAIN_AFTER = timedelta(minutes=15)  # approvers are asked once, not once per click
# Characters markdown gives a meaning to, and the braces of placeholders: a campaign's name is shown as it is.
_MARKDOWN = re.compile(r"([\\`*_\[\]()#+\-.!|>~<{}])")


@dataclass(frozen=True)
class ApprovalRequest:
    campaign: Campaign
    messaged: int  # approvers the Teams message went to
    without_teams: int  # approvers who have not linked who they are in Teams
    link: str  # the approval page's address, "" when PUBLIC_BASE_URL is not set


def approval_page_url(*, campaign: Campaign) -> str:
    """The absolute address of the approval page, or "" when Crier does not know its own address."""
    base = settings.PUBLIC_BASE_URL
    return f"{base}{reverse('admin:campaigns_campaign_transition', args=[campaign.pk, 'approve'])}" if base else ""


def _plain(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def _message(*, campaign: Campaign, people: int, author: str, link: str) -> str:
    where = (
        f"[Open the approval page]({link})" if link
        else "Open Crier's admin, Campaigns, filter “Waiting for approval” (this Crier's address is not set: "
        "PUBLIC_BASE_URL), to see it."
    )
    return (
        f"**Approval requested**\n\n{_plain(author)} asks you to approve the campaign “{_plain(campaign.name)}”, "
        f"which reaches {people} people.\n\n{where}"
    )


def approval_request(*, campaign_id: int, user) -> ApprovalRequest:
    """Puts the campaign on the approvers' list and messages them in Teams (not those who wrote or
    changed it: they may not approve it)."""
    with transaction.atomic():
        # Only the campaign's row: a template edit holds the template's row, then its campaigns' (as a launch does).
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("template").get(pk=campaign_id)
        move_require(campaign, "approve")
        state = approval_state(campaign=campaign)
        if not state.missing:
            raise ApplicationError(
                f"“{campaign}” needs no approval now." if not state.needed else f"“{campaign}” is already approved.",
                code="invalid_state", status=409,
            )
        now = timezone.now()
        if campaign.approval_requested_at and now - campaign.approval_requested_at < REQUEST_AGAIN_AFTER:
            raise ApplicationError(
                f"Approval of “{campaign}” was requested less than {REQUEST_AGAIN_AFTER.seconds // 60} minutes ago; "
                "the approvers have it on their list.", code="already_requested", status=409,
            )
        campaign.approval_requested_at = now
        campaign.save(update_fields=["approval_requested_at", "updated_at"])
        Actor(user=user).record(
            AuditEntry.Action.APPROVAL_REQUESTED, campaign=campaign,
            summary=f"Asked for the approval of “{campaign}” ({state.people} people)",
        )
        barred = campaign_changers(campaign=campaign) | {user.pk}
        approvers = get_user_model().objects.with_perm(
            "campaigns.approve_campaign", include_superusers=False, backend="django.contrib.auth.backends.ModelBackend"
        ).filter(is_active=True).exclude(pk__in=barred)
        linked = list(
            StaffProfile.objects.filter(user__in=approvers, recipient__isnull=False)
            .values_list("recipient__external_id", flat=True).distinct()
        )
        without_teams = approvers.count() - len(linked)
        link = approval_page_url(campaign=campaign)
        if linked:
            template, _ = MessageTemplate.objects.update_or_create(
                name=f"Crier: approval of campaign {campaign.pk}"[:200],
                defaults={"kind": MessageTemplate.Kind.MARKDOWN, "card": None,
                          "text": _message(campaign=campaign, people=state.people, author=str(user), link=link)},
            )
            category, _ = Category.objects.get_or_create(
                slug=CATEGORY_SLUG,
                defaults={"name": "Approval requests", "mandatory": True,
                          "description": "Crier asking approvers to approve a campaign."},
            )
            # Crier itself sends it (SYSTEM): it counts toward nobody's reach.
            campaign_send_direct(
                name=f"Approval request: {campaign.name}"[:200], template_id=template.pk, category=category,
                external_ids=linked, actor=SYSTEM,
            )
    return ApprovalRequest(campaign=campaign, messaged=len(linked), without_teams=without_teams, link=link)
