"""Which of a person's fields Entra ID owns (``ENTRA_SYNC_FIELDS``), read and checked, and a Graph value as
the field holds it. Read by the sync (``campaigns.entra_sync``), the HR API and the admin."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.errors import ApplicationError

from .attributes import text_problem
from .models import Recipient

TEXT_FIELDS = ("display_name", "first_name", "last_name", "email", "upn", "department", "job_title", "location",
               "country", "locale", "time_zone")
MAPPABLE = (*TEXT_FIELDS, "start_date")


@dataclass(frozen=True)
class FieldMap:
    field: str  # a Recipient field, or attributes.<key>
    path: tuple[str, ...]  # the Graph property, and the properties inside it

    @property
    def top(self) -> str:
        return self.path[0]


def field_maps(text: str | None = None) -> list[FieldMap]:
    """``ENTRA_SYNC_FIELDS`` read and checked: ``field=property,...``."""
    maps, problems = [], []
    for pair in (part.strip() for part in (settings.ENTRA_SYNC_FIELDS if text is None else text).split(",")):
        if not pair:
            continue
        name, _, path = (piece.strip() for piece in pair.partition("="))
        attribute = name.startswith("attributes.") and len(name) > len("attributes.")
        if not path or not (name in MAPPABLE or attribute):
            problems.append(
                f"{pair!r} (give field=property, the field one of {', '.join(MAPPABLE)} or attributes.<key>)"
            )
            continue
        if any(item.field == name for item in maps):
            problems.append(f"{pair!r} (the field {name} is mapped twice)")
            continue
        maps.append(FieldMap(name, tuple(path.split("."))))
    if problems:
        raise ApplicationError(  # the server's configuration, not the caller's request
            f"ENTRA_SYNC_FIELDS is not valid: {'; '.join(problems)}.", fields={"ENTRA_SYNC_FIELDS": problems},
            code="not_configured", status=500,
        )
    return maps


def owned_fields() -> set[str]:
    """The person's fields Entra ID owns (none while the sync is off)."""
    return {item.field for item in field_maps()} if settings.ENTRA_SYNC else set()


def graph_value(user: dict[str, Any], item: FieldMap) -> tuple[bool, Any]:
    """Whether the page lists the property, and its value."""
    if item.top not in user:
        return False, None
    value: Any = user
    for name in item.path:
        value = value.get(name) if isinstance(value, dict) else None
    return True, value


def converted_value(item: FieldMap, value: Any, problems: list[str], who: str) -> tuple[bool, Any]:
    """The value as the person's field holds it, or (False, None) when it cannot be (said in ``problems``)."""
    source = ".".join(item.path)
    if item.field == "start_date":
        if value in (None, ""):
            return True, None
        try:
            return True, _graph_date(str(value))
        except ValueError:
            problems.append(f"{who}: {item.field} from {source} is not a date ({str(value)[:40]!r})")
            return False, None
    text = "" if value is None else str(value).strip()
    if problem := text_problem(text):
        problems.append(f"{who}: {item.field} from {source}: {problem}")
        return False, None
    if item.field.startswith("attributes."):
        return True, text
    limit = Recipient._meta.get_field(item.field).max_length
    if len(text) > limit:
        problems.append(f"{who}: {item.field} from {source} is longer than {limit} characters")
        return False, None
    if item.field == "country":
        text = text.upper()
        if text and not _COUNTRY.match(text):
            problems.append(f"{who}: country from {source} is not a two-letter code ({text[:40]!r})")
            return False, None
    if item.field == "time_zone" and text and text not in zoneinfo.available_timezones():
        problems.append(f"{who}: time_zone from {source} is not a time zone ({text[:40]!r})")
        return False, None
    return True, text


_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _graph_date(value: str) -> dt.date:
    """A date, or a Graph timestamp (``employeeHireDate``: UTC) as the date it is in the organisation's
    time zone (``TIME_ZONE``)."""
    if len(value) <= 10 or value[10:] in ("T00:00:00Z", "T00:00:00.000Z", "T00:00:00+00:00"):
        return dt.date.fromisoformat(value[:10])  # a date Graph keeps as midnight UTC: that day, everywhere
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(zoneinfo.ZoneInfo(settings.TIME_ZONE)).date()
