"""A test of a template or campaign that a staff member sends themselves in Teams, as a direct message
(paced and retried like any other), to the person they linked as themselves (``campaigns.staff``)."""

from __future__ import annotations

from django.db import transaction

from campaigns.audit import Actor
from campaigns.models import AuditEntry, Campaign, Category, MessageTemplate
from campaigns.staff import staff_recipient
from core.errors import ApplicationError

from .services import campaign_send_direct

TEST_CATEGORY_SLUG = "crier-tests"


def _test_category() -> Category:
    """Tests go to the staff member whatever they opted out of, except having blocked the bot."""
    category, _ = Category.objects.get_or_create(
        slug=TEST_CATEGORY_SLUG,
        defaults={"name": "Tests sent by staff", "mandatory": True,
                  "description": "Messages staff send themselves to check a template or campaign."},
    )
    return category


def staff_test_send(*, user, template_id: int, category_id: int | None = None,
                    asking_like: Campaign | None = None) -> Campaign:
    """Sends the template, now, to the person the staff member linked as themselves in Teams: the
    exact message a recipient would get, rendered with their own fields."""
    recipient = staff_recipient(user)
    if recipient is None:
        raise ApplicationError(
            "Link your Teams identity first: open “My profile” at the top of the admin and choose who you are in Teams.",
            code="no_teams_identity",
        )
    template = MessageTemplate.objects.get(pk=template_id)
    category = Category.objects.get(pk=category_id) if category_id else _test_category()
    with transaction.atomic():
        campaign = campaign_send_direct(
            name=f"Test of {template.name}"[:200], template_id=template.pk, category=category,
            external_ids=[recipient.external_id], actor=Actor(user=user), asking_like=asking_like,
        )
        Actor(user=user).record(
            AuditEntry.Action.TEST_SEND, campaign=campaign, summary=f"Sent a test of “{template}” to {recipient}",
            detail={"template": template.pk, "recipient": recipient.external_id},
        )
    return campaign
