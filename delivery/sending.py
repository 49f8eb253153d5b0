"""Delivering one campaign message to one person: claim, check, address, render, send, record."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from bots.models import TeamsAddress
from campaigns.models import Campaign, OptOut, Recipient
from campaigns.rendering import CompiledMessage, compile_message
from campaigns.selectors import recipient_is_opted_out
from campaigns.services import opt_out_record

from .models import Delivery
from .retry import retry_delay
from .transport import Address, TeamsTransport, TransportError

logger = logging.getLogger(__name__)
_transport = TeamsTransport()


@dataclass(frozen=True)
class Outcome:
    status: str  # a Delivery.Status, or "not_claimed" when another worker has (or had) it
    retry_in: float | None = None


NOT_CLAIMED = Outcome("not_claimed")


@lru_cache(maxsize=64)
def _compiled(template_id: int, updated_at: str) -> CompiledMessage:
    from campaigns.models import MessageTemplate

    template = MessageTemplate.objects.get(pk=template_id)
    return compile_message(kind=template.kind, text=template.text, card=template.card)


def _finish(delivery_id: int, status: str, **fields: object) -> Outcome:
    Delivery.objects.filter(pk=delivery_id).update(status=status, finished_at=timezone.now(), **fields)
    return Outcome(status)


def delivery_send(*, delivery_id: int, transport: TeamsTransport | None = None) -> Outcome:
    """Sends one delivery if this call wins the claim on it. The row is the truth: a duplicate
    task, or one for a delivery already finished, claims nothing and sends nothing."""
    claimed = Delivery.objects.filter(
        pk=delivery_id, status__in=(Delivery.Status.PENDING, Delivery.Status.RETRYING)
    ).update(status=Delivery.Status.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now())
    if not claimed:
        return NOT_CLAIMED
    delivery = Delivery.objects.select_related("campaign__template", "campaign__category", "recipient").get(pk=delivery_id)
    campaign: Campaign = delivery.campaign
    recipient: Recipient = delivery.recipient
    skipped = Delivery.Status.SKIPPED
    if campaign.status == Campaign.Status.CANCELLED:
        return _finish(delivery_id, skipped, skip_reason=Delivery.SkipReason.CAMPAIGN_CANCELLED)
    if not recipient.is_active:
        return _finish(delivery_id, skipped, skip_reason=Delivery.SkipReason.INACTIVE)
    if recipient_is_opted_out(recipient_id=recipient.pk, category=campaign.category):
        return _finish(delivery_id, skipped, skip_reason=Delivery.SkipReason.OPTED_OUT)
    if recipient.aad_object_id is None:
        return _finish(delivery_id, skipped, skip_reason=Delivery.SkipReason.NO_TEAMS_IDENTITY)

    stored = TeamsAddress.objects.filter(aad_object_id=recipient.aad_object_id).first()
    address = Address(
        member_id=(stored and stored.user_id) or str(recipient.aad_object_id),
        tenant_id=(stored and stored.tenant_id) or recipient.tenant_id or settings.BOT_TENANT_ID,
        service_url=(stored and stored.service_url) or settings.TEAMS_SERVICE_URL,
        conversation_id=(stored and stored.conversation_id) or "",
    )
    if not address.tenant_id:
        return _finish(
            delivery_id,
            Delivery.Status.FAILED,
            error_code="NoTenant",
            error_message="No tenant id for this person: set the recipient's tenant_id or BOT_TENANT_ID.",
        )
    template = campaign.template
    body = _compiled(template.pk, template.updated_at.isoformat()).render(recipient)
    try:
        result = (transport or _transport).send(address=address, activity_json=body)
    except TransportError as error:
        return _record_failure(delivery, recipient, address, stored, error)
    if result.conversation_id != address.conversation_id:
        _remember_conversation(recipient, address, result.conversation_id)
    return _finish(
        delivery_id,
        Delivery.Status.SENT,
        activity_id=result.activity_id,
        conversation_id=result.conversation_id,
        last_status_code=201,
        error_code="",
        error_message="",
    )


def _remember_conversation(recipient: Recipient, address: Address, conversation_id: str) -> None:
    TeamsAddress.objects.update_or_create(
        aad_object_id=recipient.aad_object_id,
        defaults={
            "conversation_id": conversation_id,
            "tenant_id": address.tenant_id,
            "service_url": address.service_url,
        },
    )


def _record_failure(
    delivery: Delivery, recipient: Recipient, address: Address, stored: TeamsAddress | None, error: TransportError
) -> Outcome:
    if error.conversation_id and error.conversation_id != address.conversation_id:
        _remember_conversation(recipient, address, error.conversation_id)
    fields = {
        "error_code": error.code[:100],
        "error_message": error.message[:1000],
        "last_status_code": error.status,
    }
    if error.opt_out:
        opt_out_record(recipient=recipient, source=OptOut.Source.BLOCKED, note=f"Teams answered {error.code}")
        TeamsAddress.objects.filter(aad_object_id=recipient.aad_object_id).update(state=TeamsAddress.State.BLOCKED)
    if error.permanent or delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        logger.info("delivery %s failed: %s %s", delivery.pk, error.status, error.code)
        return _finish(delivery.pk, Delivery.Status.FAILED, **fields)
    delay = retry_delay(attempt=delivery.attempts, retry_after=error.retry_after)
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() + timedelta(seconds=delay), **fields
    )
    return Outcome(Delivery.Status.RETRYING, retry_in=delay)
