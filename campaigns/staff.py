"""A staff member's own Crier settings: their time zone and who they are in Teams (to receive their
own tests)."""

from __future__ import annotations

import functools
import zoneinfo

from core.errors import ApplicationError

from .models import Recipient, StaffProfile


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
