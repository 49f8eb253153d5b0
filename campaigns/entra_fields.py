"""Which of a person's fields Entra ID owns (``ENTRA_SYNC_FIELDS``), read and checked, and a Graph value as
the field holds it. Read by the sync (``campaigns.entra_sync``), the HR API and the admin."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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


# --- What a run needs configured -------------------------------------------------------------------


def _authority_tenant() -> str:
    """The tenant ``GRAPH_AUTHORITY`` names (its path's first part), or "" when it names none."""
    try:
        return urlsplit(settings.GRAPH_AUTHORITY or "").path.strip("/").split("/")[0].lower()
    except ValueError:  # not a URL at all
        return ""


def organisation_tenant() -> str:
    """The organisation's tenant id: ``BOT_TENANT_ID``, else the one ``GRAPH_AUTHORITY`` names."""
    return settings.BOT_TENANT_ID or _authority_tenant()


def user_type_taken(user_type: Any) -> bool:
    """Whether an account of this ``userType`` is a person to message (no type said: yes)."""
    return not user_type or str(user_type).lower() in {kind.lower() for kind in settings.ENTRA_SYNC_USER_TYPES}


def configuration_require() -> list[FieldMap]:
    """The field map, or ``ApplicationError`` for a configuration a run cannot work with, saying what to set."""
    if not [kind for kind in settings.ENTRA_SYNC_USER_TYPES if kind.strip()]:
        raise ApplicationError("ENTRA_SYNC_USER_TYPES is empty: name the kinds of account to take, such as Member.",
                               code="not_configured", status=409)
    if _authority_tenant() in ("", "botframework.com", "common", "organizations"):
        raise ApplicationError(
            "Set GRAPH_AUTHORITY to your organisation's tenant (https://login.microsoftonline.com/<tenant id>), or "
            "BOT_TENANT_ID for a single-tenant bot: Graph's tokens never come from botframework.com.",
            code="not_configured", status=409,
        )
    return field_maps()


def sync_require() -> list[FieldMap]:
    """The field map, or ``ApplicationError`` when the sync is off or not configured."""
    if not settings.ENTRA_SYNC:
        raise ApplicationError(
            "The sync from Entra ID is off: set ENTRA_SYNC=true (docs/going-live.md).", code="sync_off", status=409
        )
    return configuration_require()


def graph_select(maps: list[FieldMap]) -> str:
    """The Graph properties a run asks for: those the field map reads, and those the sync itself needs."""
    tops = dict.fromkeys(["id", "accountEnabled", "userType", settings.ENTRA_SYNC_EXTERNAL_ID,
                          *(item.top for item in maps)])
    return ",".join(name for name in tops if name)


def hr_id_of(user: dict[str, Any]) -> str:
    """The HR system's id Entra ID holds for the person (``ENTRA_SYNC_EXTERNAL_ID``), or ""."""
    return str(user.get(settings.ENTRA_SYNC_EXTERNAL_ID) or "").strip()


def fingerprint(maps: list[FieldMap]) -> str:
    """What a delta link was asked for and what its answers were taken as: when any of it changes, the next
    run lists everyone again."""
    mapped = ",".join(f"{item.field}={'.'.join(item.path)}" for item in maps)
    kinds = ",".join(sorted(kind.lower() for kind in settings.ENTRA_SYNC_USER_TYPES))
    return f"{graph_select(maps)}|{mapped}|{kinds}|{settings.ENTRA_SYNC_EXTERNAL_ID}"
