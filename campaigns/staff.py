"""A staff member's own Crier settings: their time zone and who they are in Teams (to receive their
own tests)."""

from __future__ import annotations

import functools
import zoneinfo

from django.db import transaction

from core.errors import ApplicationError

from .audit import Actor
from .models import AuditEntry, Campaign, Category, MessageTemplate, Recipient, StaffProfile

TEST_CATEGORY_SLUG = "crier-tests"


def staff_profile(user) -> StaffProfile:
    profile = getattr(user, "_crier_profile", None)
    if profile is None:
        profile, _ = StaffProfile.objects.select_related("recipient").get_or_create(user=user)
        user._crier_profile = profile
    return profile


def staff_recipient(user) -> Recipient | None:
    profile = StaffProfile.objects.select_related("recipient").filter(user=user).first()
    return profile.recipient if profile else None


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """The time zones a staff member may choose (read from the system's database once, when first
    needed: it takes tens of milliseconds, which no process should pay at start-up)."""
    return tuple(sorted(zoneinfo.available_timezones() - {"localtime", "Factory"}))


def staff_time_zone(user) -> zoneinfo.ZoneInfo | None:
    """One query per request, and none written: most staff never open their profile."""
    name = StaffProfile.objects.filter(user=user).values_list("time_zone", flat=True).first()
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def staff_profile_update(*, user, time_zone: str, recipient: Recipient | None) -> StaffProfile:
    if time_zone and time_zone not in time_zone_names():
        raise ApplicationError(f"Unknown time zone {time_zone!r}.", fields={"time_zone": ["Unknown time zone."]})
    profile = staff_profile(user)
    profile.time_zone = time_zone
    profile.recipient = recipient
    profile.save(update_fields=["time_zone", "recipient"])
    return profile


def _test_category() -> Category:
    """Tests go to the staff member whatever they opted out of, except having blocked the bot."""
    category, _ = Category.objects.get_or_create(
        slug=TEST_CATEGORY_SLUG,
        defaults={"name": "Tests sent by staff", "mandatory": True,
                  "description": "Messages staff send themselves to check a template or campaign."},
    )
    return category


def staff_test_send(*, user, template_id: int, category_id: int | None = None) -> Campaign:
    """Sends the template, now, to the person the staff member linked as themselves in Teams: the
    exact message a recipient would get, rendered with their own fields."""
    from delivery.services import campaign_send_direct

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
            external_ids=[recipient.external_id], actor=Actor(user=user),
        )
        Actor(user=user).record(
            AuditEntry.Action.TEST_SEND, campaign=campaign, summary=f"Sent a test of “{template}” to {recipient}",
            detail={"template": template.pk, "recipient": recipient.external_id},
        )
    return campaign
