"""The Teams app package an administrator uploads to the organisation's catalog: ``manifest.json`` and
two icons in a zip (``python manage.py teams_app_package``, or the admin's download for superusers).

The manifest declares the bot (personal scope: one-to-one chats; team scope: added to a team, it lists
the team's members and messages each of them one to one), ``webApplicationInfo`` (the app id
Microsoft Graph and resource-specific consent know it by), the resource-specific permission with which
Teams sends read receipts (``ChatMessageReadReceipt.Read.Chat``; consented with the app, so that counting
reads needs no new upload), the activity type of an urgent campaign's pop-up in the activity feed
(``urgentAnnouncement``), a personal tab that opens the admin in Teams (``TEAMS_TAB``), the domains it may open, and names and descriptions from settings. Everything is checked against the rules of Microsoft's manifest
reference before anything is written; a problem is reported with the field it is in.

The icons are drawn here (a speech bubble: the colour icon in the accent colour, the outline icon white on
transparent, as Teams asks) unless settings name files to use instead; those are checked for size and
transparency. A PNG of one flat shape needs no imaging library: ``_png`` writes one in a few lines.
"""

from __future__ import annotations

import io
import json
import re
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import ApplicationError

MANIFEST_VERSION = "1.22"
SCHEMA_URL = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
READ_RECEIPTS = "ChatMessageReadReceipt.Read.Chat"
URGENT_ACTIVITY = "urgentAnnouncement"  # the activity type an urgent campaign's notification is sent as
COLOR_SIZE, OUTLINE_SIZE = 192, 32
# The namespace the default app id is derived in, from the bot's app id: the same bot, the same app.
_APP_ID_NAMESPACE = uuid.UUID("6d1f6a36-52a8-4be4-9c49-1f4f3e0f7a2c")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# A host name, or one wildcard label in front of a domain of at least two labels (*.contoso.com).
_DOMAIN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(:\d{1,5})?$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def app_id() -> str:
    """The manifest's ``id``: ``TEAMS_APP_ID``, or a UUID derived from the bot's app id."""
    return settings.TEAMS_APP_ID or str(uuid.uuid5(_APP_ID_NAMESPACE, settings.BOT_APP_ID or ""))


def _website() -> str:
    return settings.TEAMS_APP_WEBSITE_URL or settings.PUBLIC_BASE_URL


def _resource() -> str:
    """``api://<public host>/<bot app id>``, or empty when there is no public address (a check says so)."""
    host = urlsplit(settings.PUBLIC_BASE_URL).hostname if settings.PUBLIC_BASE_URL else None
    return f"api://{host}/{settings.BOT_APP_ID}" if host else ""


def valid_domains() -> list[str]:
    """The public URL's host, then the configured extra domains, each once."""
    public = urlsplit(settings.PUBLIC_BASE_URL)
    hosts = [public.hostname or ""] if settings.PUBLIC_BASE_URL else []  # never its user or password
    return list(dict.fromkeys(host.lower() for host in [*hosts, *settings.TEAMS_APP_VALID_DOMAINS] if host))


def manifest() -> dict[str, Any]:
    """The manifest, from settings."""
    website = _website()
    return {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": settings.TEAMS_APP_VERSION,
        "id": app_id(),
        "developer": {
            "name": settings.TEAMS_APP_DEVELOPER_NAME,
            "websiteUrl": website,
            "privacyUrl": settings.TEAMS_APP_PRIVACY_URL or website,
            "termsOfUseUrl": settings.TEAMS_APP_TERMS_URL or website,
        },
        "name": {"short": settings.TEAMS_APP_SHORT_NAME, "full": settings.TEAMS_APP_FULL_NAME},
        "description": {"short": settings.TEAMS_APP_SHORT_DESCRIPTION, "full": settings.TEAMS_APP_FULL_DESCRIPTION},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": settings.TEAMS_APP_ACCENT_COLOR,
        "bots": [{
            "botId": settings.BOT_APP_ID,
            # Team too: added to a team, the bot can list its members and message each one to one.
            "scopes": ["personal", "team"],
            "isNotificationOnly": False,  # people type stop, start and help to it
            "supportsFiles": False,
            "commandLists": [{
                "scopes": ["personal"],
                "commands": [
                    {"title": "stop", "description": "Stop the messages you may opt out of"},
                    {"title": "start", "description": "Receive them again"},
                    {"title": "help", "description": "What this app does"},
                ],
            }],
        }],
        "validDomains": valid_domains(),
        # Teams wants a resource with the app id for resource-specific consent (manifest 1.12 and later).
        "webApplicationInfo": {"id": settings.BOT_APP_ID, "resource": _resource()},
        "authorization": {"permissions": {"resourceSpecific": [{"name": READ_RECEIPTS, "type": "Application"}]}},
        # The admin inside Teams, for comms staff (campaigns/teams_tab.py); others see a page that asks them to
        # sign in and then lets them in only with a role.
        **({"staticTabs": [{
            "entityId": "crier-admin", "name": "Crier", "contentUrl": f"{settings.PUBLIC_BASE_URL}/tab/",
            "websiteUrl": f"{settings.PUBLIC_BASE_URL}/admin/", "scopes": ["personal"],
        }]} if settings.TEAMS_TAB and settings.PUBLIC_BASE_URL else {}),
        # What an urgent campaign's pop-up in the activity feed says above its own words (delivery.notifying).
        "activities": {"activityTypes": [{
            "type": URGENT_ACTIVITY, "description": "An urgent announcement from your organisation",
            "templateText": "sent an urgent announcement",
        }]},
    }


# --- checks: Microsoft's manifest reference, field by field --------------------------------------


def _text(value: Any, *, most: int, least: int = 1) -> str | None:
    if not isinstance(value, str) or len(value.strip()) < least:
        return "is required" if least else "must be text"
    if len(value) > most:
        return f"is {len(value)} characters; Teams allows at most {most}"
    return None


def _guid(value: Any) -> str | None:
    if isinstance(value, str) and _GUID.match(value):
        return None
    return "must be a GUID (the form 00000000-0000-0000-0000-000000000000)"


def _https(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "is required: set PUBLIC_BASE_URL, or the TEAMS_APP_*_URL settings"
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// address"
    return _text(value, most=2048)


def _semver(value: Any) -> str | None:
    if isinstance(value, str) and _SEMVER.match(value) and len(value) <= 256:
        return None
    return "must be a version such as 1.0.0"


def _color(value: Any) -> str | None:
    return None if isinstance(value, str) and _COLOR.match(value) else "must be a colour such as #4F52B2"


FIELDS: list[tuple[str, Callable[[Any], str | None]]] = [
    ("id", _guid),
    ("version", _semver),
    ("developer.name", lambda v: _text(v, most=32)),
    ("developer.websiteUrl", _https),
    ("developer.privacyUrl", _https),
    ("developer.termsOfUseUrl", _https),
    ("name.short", lambda v: _text(v, most=30)),
    ("name.full", lambda v: _text(v, most=100)),
    ("description.short", lambda v: _text(v, most=80)),
    ("description.full", lambda v: _text(v, most=4000)),
    ("accentColor", _color),
    ("bots.0.botId", _guid),
    ("webApplicationInfo.id", _guid),
    ("webApplicationInfo.resource", lambda v: None if v else "needs PUBLIC_BASE_URL (api://<its host>/<BOT_APP_ID>)"),
    ("activities.activityTypes.0.type", lambda v: _text(v, most=32)),
    ("activities.activityTypes.0.description", lambda v: _text(v, most=128)),
    ("activities.activityTypes.0.templateText", lambda v: _text(v, most=128)),
]


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, list):
            document = document[int(part)] if part.isdigit() and int(part) < len(document) else None
        elif isinstance(document, dict):
            document = document.get(part)
        else:
            return None
    return document


def manifest_problems(document: dict[str, Any]) -> dict[str, str]:
    """Each field that breaks Microsoft's rules, with what is wrong; empty when the manifest is valid."""
    problems = {path: problem for path, check in FIELDS if (problem := check(_at(document, path)))}
    domains = document.get("validDomains") or []
    if len(domains) > 16:
        problems["validDomains"] = f"lists {len(domains)} domains; Teams allows at most 16"
    for position, domain in enumerate(domains):
        if not isinstance(domain, str) or not _DOMAIN.match(domain) or len(domain) > 2048:
            problems[f"validDomains.{position}"] = (
                f"{domain!r} is not a domain: give a host name (contoso.com or *.contoso.com), "
                "without https:// or a path"
            )
    for position, tab in enumerate(document.get("staticTabs") or []):
        for field in ("contentUrl", "websiteUrl"):
            if problem := _https(tab.get(field)):
                problems[f"staticTabs.{position}.{field}"] = f"{problem} (the personal tab: set PUBLIC_BASE_URL to https)"
    bot = _at(document, "bots.0") or {}
    if bot.get("scopes") != ["personal", "team"]:
        problems["bots.0.scopes"] = (
            'must be ["personal", "team"]: Crier writes to each person in a one-to-one chat, and reaches the members '
            "of the teams it is added to"
        )
    return problems


# --- icons ---------------------------------------------------------------------------------------


def _png(size: int, pixel: Callable[[int, int], tuple[int, int, int, int]]) -> bytes:
    """An RGBA PNG of ``size`` by ``size`` pixels whose colour at (x, y) is ``pixel(x, y)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8 bits, RGBA, no interlace
    return _PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def _bubble(x: float, y: float) -> bool:
    """A speech bubble in the unit square: a rounded body and a tail at its lower left."""
    left, top, right, bottom, radius = 0.14, 0.18, 0.86, 0.70, 0.12
    cx, cy = min(max(x, left + radius), right - radius), min(max(y, top + radius), bottom - radius)
    body = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2 and left <= x <= right and top <= y <= bottom
    tail = bottom <= y <= 0.86 and 0.26 <= x <= 0.26 + (0.86 - y) * 1.1
    return body or tail


def _drawn_icon(size: int, background: tuple[int, int, int, int], ink: tuple[int, int, int, int]) -> bytes:
    return _png(size, lambda x, y: ink if _bubble((x + 0.5) / size, (y + 0.5) / size) else background)


def color_icon() -> bytes:
    red, green, blue = (int(settings.TEAMS_APP_ACCENT_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    return _drawn_icon(COLOR_SIZE, (red, green, blue, 255), (255, 255, 255, 255))


def outline_icon() -> bytes:
    return _drawn_icon(OUTLINE_SIZE, (0, 0, 0, 0), (255, 255, 255, 255))


def icon_problem(data: bytes, *, size: int, transparent: bool) -> str | None:
    """What keeps ``data`` from being the icon Teams asks for: a PNG of ``size`` by ``size`` pixels, with
    an alpha channel when ``transparent``."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return "is not a PNG image"
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    if (width, height) != (size, size):
        return f"is {width}x{height} pixels; Teams needs {size}x{size}"
    if transparent and color_type not in (4, 6):  # grey or colour with alpha
        return "has no transparency; Teams needs a white outline on a transparent background"
    return None


def _icon(setting: str, *, size: int, transparent: bool, drawn: Callable[[], bytes]) -> bytes:
    path = getattr(settings, setting)
    if not path:
        return drawn()
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ApplicationError(
            f"{setting}={path} cannot be read: {error.strerror}.", fields={setting: "cannot be read"}
        ) from error
    if problem := icon_problem(data, size=size, transparent=transparent):
        raise ApplicationError(f"{setting}={path} {problem}.", fields={setting: problem})
    return data


def app_package_build() -> bytes:
    """The zip to upload, or ``ApplicationError`` naming every field that Teams would refuse."""
    document = manifest()
    if problems := manifest_problems(document):
        listed = "; ".join(f"{field} {problem}" for field, problem in problems.items())
        raise ApplicationError(f"The Teams app manifest is not valid: {listed}.", fields=problems)
    color = _icon("TEAMS_APP_COLOR_ICON", size=COLOR_SIZE, transparent=False, drawn=color_icon)
    outline = _icon("TEAMS_APP_OUTLINE_ICON", size=OUTLINE_SIZE, transparent=True, drawn=outline_icon)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(document, indent=2, ensure_ascii=False))
        package.writestr("color.png", color)
        package.writestr("outline.png", outline)
    return buffer.getvalue()
