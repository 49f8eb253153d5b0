"""What the bot does with each activity Teams sends it."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.models import Category, OptOut, Recipient
from campaigns.services import opt_out_record, opt_out_remove_all

from delivery.pacing import Deferred
from delivery.retry import retry_in
from delivery.transport import Address, TeamsTransport, TransportError

from .models import TeamsAddress
from .schema import message_activity, parse_activity

logger = logging.getLogger(__name__)

STOP_WORDS = {"stop", "unsubscribe", "opt out", "optout"}
START_WORDS = {"start", "subscribe", "opt in", "optin", "resume"}
REPLY_STOPPED = (
    "You will no longer receive announcements from {bot}. Messages your organisation marks as "
    "mandatory will still reach you. Type **start** to receive announcements again."
)
REPLY_STARTED = "Welcome back: you will receive announcements from {bot} again. Type **stop** at any time to opt out."
REPLY_CATEGORY_STOPPED = "You will no longer receive {category} messages. Type **start** to receive everything again."
REPLY_UNKNOWN_PERSON = (
    "Your organisation's directory does not list you yet, so there is nothing to opt out of. "
    "Ask your communications team if you keep receiving messages."
)
REPLY_HELP = "I send your organisation's announcements. Type **stop** to opt out, or **start** to opt back in."


def _tenant_of(activity) -> str:
    channel_data = activity.channel_data or {}
    tenant = (channel_data.get("tenant") or {}).get("id") if isinstance(channel_data, dict) else None
    return tenant or (activity.conversation.tenant_id if activity.conversation else "") or ""


def _normalise(text: str | None) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")  # Teams may wrap text in HTML (mentions)
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def address_record(*, activity, state: str | None) -> TeamsAddress | None:
    """Stores where the person can be reached, from a validated activity."""
    sender = activity.from_property
    aad = getattr(sender, "aad_object_id", None) if sender else None
    if not aad:
        return None
    defaults: dict[str, Any] = {
        "tenant_id": _tenant_of(activity),
        "user_id": sender.id or "",
        "conversation_id": activity.conversation.id if activity.conversation else "",
        "service_url": activity.service_url or "",
    }
    if state:
        defaults["state"] = state
        if state == TeamsAddress.State.INSTALLED:
            defaults["installed_at"] = timezone.now()
    address, _ = TeamsAddress.objects.update_or_create(aad_object_id=aad, defaults=defaults)
    return address


def activity_handle(*, data: dict[str, Any]) -> list[str]:
    """Handles one validated activity; returns the replies to send the person (possibly none)."""
    activity = parse_activity(data)
    bot_id = f"28:{settings.BOT_APP_ID}"
    kind = activity.type
    if kind == "conversationUpdate":
        added = [m.id for m in activity.members_added or []]
        removed = [m.id for m in activity.members_removed or []]
        if bot_id in added:
            _installed(activity)
        elif bot_id in removed:
            address_record(activity=activity, state=TeamsAddress.State.UNINSTALLED)
        return []
    if kind == "installationUpdate":
        if (activity.action or "").startswith("add"):
            _installed(activity)
        elif (activity.action or "").startswith("remove"):
            address_record(activity=activity, state=TeamsAddress.State.UNINSTALLED)
        return []
    if kind == "message":
        address_record(activity=activity, state=TeamsAddress.State.INSTALLED)
        return _message(activity)
    return []


def _installed(activity) -> None:
    from delivery.welcome import welcome_on_install

    address = address_record(activity=activity, state=TeamsAddress.State.INSTALLED)
    if address is None:
        return
    # Installing again lifts the opt-out that blocking or removing the bot recorded.
    OptOut.objects.filter(recipient__aad_object_id=address.aad_object_id, source=OptOut.Source.BLOCKED).delete()
    welcome_on_install(aad_object_id=str(address.aad_object_id))


def _message(activity) -> list[str]:
    aad = getattr(activity.from_property, "aad_object_id", None)
    recipient = Recipient.objects.filter(aad_object_id=aad).first() if aad else None
    value = activity.value if isinstance(activity.value, dict) else {}
    bot = settings.BOT_NAME
    if value.get("crier_action") == "opt_out":
        if recipient is None:
            return [REPLY_UNKNOWN_PERSON]
        category = Category.objects.filter(slug=value.get("category") or "").first()
        if category is None or category.mandatory:
            opt_out_record(recipient=recipient, source=OptOut.Source.CARD_BUTTON)
            return [REPLY_STOPPED.format(bot=bot)]
        opt_out_record(recipient=recipient, category=category, source=OptOut.Source.CARD_BUTTON)
        return [REPLY_CATEGORY_STOPPED.format(category=category.name)]
    word = _normalise(activity.text)
    if word in STOP_WORDS:
        if recipient is None:
            return [REPLY_UNKNOWN_PERSON]
        opt_out_record(recipient=recipient, source=OptOut.Source.TYPED_STOP)
        return [REPLY_STOPPED.format(bot=bot)]
    if word in START_WORDS:
        if recipient is not None:
            opt_out_remove_all(recipient=recipient)
        return [REPLY_STARTED.format(bot=bot)]
    return [REPLY_HELP]


_transport = TeamsTransport()


@dataclass(frozen=True)
class ReplyOutcome:
    status: str  # "sent", "failed" or "retrying"
    retry_in: float | None = None  # seconds, when retrying
    attempt: int = 1  # the attempt to make next, when retrying


def reply_send(
    *, service_url: str, conversation_id: str, tenant_id: str, text: str, attempt: int = 1,
    transport: TeamsTransport | None = None,
) -> ReplyOutcome:
    """Sends one reply, paced like every call to Teams, and says whether and when to try again:
    by the same table as a campaign's sends (``delivery.transport.classify``, ``delivery.retry``).
    A conversation at its own limit costs no attempt."""
    address = Address(
        member_id="", tenant_id=tenant_id or settings.BOT_TENANT_ID, service_url=service_url,
        conversation_id=conversation_id,
    )
    body = json.dumps(message_activity(text=text)).encode()
    try:
        (transport or _transport).reply(address=address, activity_json=body)
    except Deferred as deferred:
        return ReplyOutcome("retrying", retry_in=deferred.wait, attempt=attempt)
    except TransportError as error:
        delay = retry_in(attempt=attempt, error=error)
        if delay is None:
            logger.info("reply not sent (attempt %s): %s %s", attempt, error.status, error.code)
            return ReplyOutcome("failed")
        return ReplyOutcome("retrying", retry_in=delay, attempt=attempt + 1)
    return ReplyOutcome("sent")


def activity_tenant(*, data: dict[str, Any]) -> str:
    """The tenant an inbound activity came from (its replies are paced in that tenant)."""
    channel_data = data.get("channelData")
    tenant = (channel_data.get("tenant") or {}) if isinstance(channel_data, dict) else {}
    conversation = data.get("conversation") or {}
    found = (tenant.get("id") if isinstance(tenant, dict) else None) or (
        conversation.get("tenantId") if isinstance(conversation, dict) else None
    )
    return found if isinstance(found, str) else ""
