"""Campaign lifecycle: launch, schedule, cancel, fan out, complete. The engine's writes."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from campaigns.errors import ApplicationError
from campaigns.models import Campaign
from campaigns.selectors import audience_recipients, opt_outs_blocking

from .models import Delivery

logger = logging.getLogger(__name__)
ACTIVE = (Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.RETRYING)


# --- Campaign lifecycle ----------------------------------------------------------------------

def campaign_launch(*, campaign_id: int, only_if_scheduled: bool = False) -> Campaign:
    """Starts a campaign now: every recipient gets a delivery row (one set-based statement),
    then the fan-out is queued once the transaction has committed. Launching twice is refused,
    so two schedulers racing for the same campaign launch it once."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().select_related("template").get(pk=campaign_id)
        allowed = (Campaign.Status.SCHEDULED,) if only_if_scheduled else (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
        if campaign.status not in allowed:
            raise ApplicationError(
                f"Campaign {campaign.pk} is {campaign.status}; only a draft or scheduled campaign can be launched.",
                code="invalid_state",
                status=409,
            )
        campaign.status = Campaign.Status.RUNNING
        campaign.launched_at = timezone.now()
        try:
            with transaction.atomic():
                campaign.save(update_fields=["status", "launched_at", "updated_at"])
        except IntegrityError as exc:
            raise ApplicationError(
                "Another welcome campaign is running; cancel it before launching this one.",
                code="welcome_already_running",
                status=409,
            ) from exc
        if campaign.kind == Campaign.Kind.ANNOUNCEMENT:
            deliveries_materialise(campaign=campaign)
            transaction.on_commit(lambda: _enqueue_fan_out(campaign.pk))
    return campaign


def campaign_schedule(*, campaign_id: int, send_at: datetime) -> Campaign:
    if send_at <= timezone.now():
        raise ApplicationError(
            "send_at must be in the future; launch the campaign to send it now.", fields={"send_at": ["Must be in the future."]}
        )
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
            raise ApplicationError(
                f"Campaign {campaign.pk} is {campaign.status}; only a draft can be scheduled.", code="invalid_state", status=409
            )
        if campaign.kind != Campaign.Kind.ANNOUNCEMENT:
            raise ApplicationError("Welcome campaigns are launched, not scheduled.", code="invalid_state", status=409)
        campaign.status = Campaign.Status.SCHEDULED
        campaign.send_at = send_at
        campaign.save(update_fields=["status", "send_at", "updated_at"])
    return campaign


def campaign_cancel(*, campaign_id: int) -> Campaign:
    """Stops a campaign: whoever has not been sent to yet is skipped, visibly."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
            raise ApplicationError(f"Campaign {campaign.pk} is already {campaign.status}.", code="invalid_state", status=409)
        campaign.status = Campaign.Status.CANCELLED
        campaign.cancelled_at = timezone.now()
        campaign.save(update_fields=["status", "cancelled_at", "updated_at"])
        campaign.deliveries.filter(status__in=(Delivery.Status.PENDING, Delivery.Status.RETRYING)).update(
            status=Delivery.Status.SKIPPED, skip_reason=Delivery.SkipReason.CAMPAIGN_CANCELLED, finished_at=timezone.now()
        )
    return campaign


def deliveries_materialise(*, campaign: Campaign) -> int:
    """One INSERT ... SELECT inside PostgreSQL for the whole audience, then the people who opted
    out or cannot be reached are marked skipped in one UPDATE each. Returns the rows inserted."""
    people_sql, people_params = audience_recipients(audience=campaign.audience).values("id").query.sql_with_params()
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, recipient_id) SELECT %s, people.id FROM ({people_sql}) AS people "
            "ON CONFLICT (campaign_id, recipient_id) DO NOTHING",
            [campaign.pk, *people_params],
        )
        inserted = cursor.rowcount
    pending = campaign.deliveries.filter(status=Delivery.Status.PENDING)
    now = timezone.now()
    pending.filter(Exists(opt_outs_blocking(category=campaign.category).filter(recipient_id=OuterRef("recipient_id")))).update(
        status=Delivery.Status.SKIPPED, skip_reason=Delivery.SkipReason.OPTED_OUT, finished_at=now
    )
    pending.filter(recipient__aad_object_id__isnull=True).update(
        status=Delivery.Status.SKIPPED, skip_reason=Delivery.SkipReason.NO_TEAMS_IDENTITY, finished_at=now
    )
    return inserted


def _enqueue_fan_out(campaign_id: int) -> None:
    from .tasks import campaign_fan_out

    campaign_fan_out.delay(campaign_id)


def campaign_fan_out(*, campaign_id: int) -> int:
    """Queues one delivery task per pending recipient, in id order, through one broker connection."""
    from .tasks import deliver

    queued, last_id = 0, 0
    with deliver.app.producer_or_acquire() as producer:
        while True:
            ids = list(
                Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.PENDING, id__gt=last_id)
                .order_by("id")
                .values_list("id", flat=True)[: settings.FAN_OUT_BATCH_SIZE]
            )
            if not ids:
                break
            for delivery_id in ids:
                deliver.apply_async((delivery_id,), producer=producer)
            queued += len(ids)
            last_id = ids[-1]
    campaigns_complete_finished()
    return queued


def campaigns_complete_finished() -> int:
    """Marks completed the running announcements in which every recipient has reached an end state."""
    unfinished = Delivery.objects.filter(campaign_id=OuterRef("pk"), status__in=ACTIVE)
    return (
        Campaign.objects.filter(status=Campaign.Status.RUNNING, kind=Campaign.Kind.ANNOUNCEMENT)
        .exclude(Exists(unfinished))
        .update(status=Campaign.Status.COMPLETED, completed_at=timezone.now())
    )


def launch_due_campaigns() -> list[int]:
    launched = []
    due = Campaign.objects.filter(status=Campaign.Status.SCHEDULED, send_at__lte=timezone.now()).values_list("id", flat=True)
    for campaign_id in list(due):
        try:
            campaign_launch(campaign_id=campaign_id, only_if_scheduled=True)
            launched.append(campaign_id)
        except ApplicationError:
            logger.info("campaign %s was launched or changed by someone else", campaign_id)
    return launched
