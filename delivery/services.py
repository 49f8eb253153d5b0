"""Campaign lifecycle: launch, schedule, materialise, complete; pause, resume and cancel live in
``delivery.control`` and are re-exported here, so callers (API, admin) have one module to use."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Min, OuterRef
from django.utils import timezone

from campaigns.approvals import approval_require
from campaigns.audit import SYSTEM, Actor
from campaigns.errors import ApplicationError
from campaigns.models import AuditEntry, Campaign, Category, Recipient
from campaigns.selectors import audience_recipients, opted_out_sql

from . import progress
from .control import campaign_cancel, campaign_pause, campaign_resume
from .models import Delivery

__all__ = [
    "campaign_cancel",
    "campaign_launch",
    "campaign_materialise",
    "campaign_pause",
    "campaign_resume",
    "campaign_schedule",
    "campaign_send_direct",
    "campaigns_complete_finished",
    "deliveries_materialise_chunk",
    "launch_due_campaigns",
]

logger = logging.getLogger(__name__)
ACTIVE = (Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.RETRYING)

# One range of recipient ids of the audience becomes delivery rows in one statement inside
# PostgreSQL (a range, not ORDER BY ... LIMIT, which makes the planner scan and sort the whole table
# for every chunk); people who opted out (or blocked the bot) and people without a Teams identity
# are inserted already skipped, with the reason.
MATERIALISE_CHUNK = """
WITH chunk AS (
    SELECT people.id, people.aad_object_id FROM ({people}) AS people
     WHERE people.id > %s AND people.id <= %s
), inserted AS (
    INSERT INTO delivery_delivery (campaign_id, recipient_id, status, skip_reason, finished_at)
    SELECT %s, c.id,
           CASE WHEN c.opted_out OR c.aad_object_id IS NULL THEN 'skipped' ELSE 'pending' END,
           CASE WHEN c.opted_out THEN 'opted_out' WHEN c.aad_object_id IS NULL THEN 'no_teams_identity' ELSE '' END,
           CASE WHEN c.opted_out OR c.aad_object_id IS NULL THEN now() END
      FROM (SELECT chunk.id, chunk.aad_object_id, {opted_out} AS opted_out FROM chunk) AS c
    ON CONFLICT (campaign_id, recipient_id) DO NOTHING
    RETURNING status
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM inserted WHERE status = 'skipped'),
       (SELECT max(id) FROM campaigns_recipient)
"""


def campaign_launch(*, campaign_id: int, only_if_scheduled: bool = False, actor: Actor = SYSTEM) -> Campaign:
    """Starts a campaign now. The first chunk of delivery rows is written in the launching
    transaction (a small campaign is complete at once); the rest by a task, chunk by chunk, while
    sending has already begun. Launching twice is refused, so two schedulers racing for the same
    campaign launch it once. A large announcement needs its approval (``campaigns.approvals``)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().select_related("category").get(pk=campaign_id)
        allowed = (Campaign.Status.SCHEDULED,) if only_if_scheduled else (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
        if campaign.kind == Campaign.Kind.DIRECT:
            raise ApplicationError("A direct message is sent when it is made.", code="invalid_state", status=409)
        if campaign.status not in allowed:
            raise ApplicationError(
                f"Campaign {campaign.pk} is {campaign.status}; only a draft or scheduled campaign can be launched.",
                code="invalid_state",
                status=409,
            )
        approval_require(campaign=campaign, actor=actor)
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
        when = " at its scheduled time" if only_if_scheduled else ""
        actor.record(AuditEntry.Action.LAUNCH, campaign=campaign, summary=f"Launched “{campaign}”{when}")
        if campaign.kind == Campaign.Kind.ANNOUNCEMENT:
            lowest = Recipient.objects.aggregate(lowest=Min("id"))["lowest"] or 1
            last_id, _, skipped, finished = deliveries_materialise_chunk(campaign=campaign, after=lowest - 1)
            transaction.on_commit(lambda: _after_launch(campaign.pk, last_id, skipped, finished))
    return campaign


def _after_launch(campaign_id: int, last_id: int, skipped: int, finished: bool) -> None:
    from .tasks import campaign_materialise, feed_deliveries

    progress.record(campaign_id, skipped=skipped, start=True)
    feed_deliveries.delay()
    if not finished:
        campaign_materialise.delay(campaign_id, last_id)


def deliveries_materialise_chunk(*, campaign: Campaign, after: int) -> tuple[int, int, int, bool]:
    """Writes the delivery rows for the audience's people whose id is in the next
    ``MATERIALISE_CHUNK_SIZE`` ids above ``after``. Returns (the range's end, rows inserted, of which
    skipped, finished: no recipient has a higher id)."""
    upper = after + settings.MATERIALISE_CHUNK_SIZE
    people, params = audience_recipients(audience=campaign.audience).values("id", "aad_object_id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            MATERIALISE_CHUNK.format(
                people=people, opted_out=opted_out_sql(recipient="chunk.id", mandatory="%s", category="%s")
            ),
            [*params, after, upper, campaign.pk, campaign.category.mandatory, campaign.category_id],
        )
        inserted, skipped, highest = cursor.fetchone()
    finished = upper >= (highest or 0)
    Campaign.objects.filter(pk=campaign.pk).update(
        total_deliveries=F("total_deliveries") + inserted, **({"materialised_at": timezone.now()} if finished else {})
    )
    return upper, inserted, skipped, finished


def campaign_materialise(*, campaign_id: int, after: int) -> int:
    """The rest of a large audience, one committed chunk at a time, so workers send meanwhile."""
    total = 0
    finished = False
    while not finished:
        progress.client().set(materialising_key(campaign_id), after, ex=settings.RETRY_GRACE_SECONDS * 4)
        with transaction.atomic():
            # The campaign row's lock orders each chunk against a cancel: a chunk either commits
            # before the cancel (which then skips its rows) or sees the campaign cancelled.
            campaign = Campaign.objects.select_for_update().select_related("category").get(pk=campaign_id)
            if campaign.status == Campaign.Status.CANCELLED:
                Campaign.objects.filter(pk=campaign_id).update(materialised_at=timezone.now())
                break
            after, inserted, skipped, finished = deliveries_materialise_chunk(campaign=campaign, after=after)
        progress.record(campaign_id, skipped=skipped)
        total += inserted
    progress.client().delete(materialising_key(campaign_id))
    return total


def materialising_key(campaign_id: int) -> str:
    """Present while a task writes the campaign's rows: the reconciler restarts one that vanished."""
    return f"crier:materialising:{campaign_id}"


DIRECT_DELIVERIES = f"""
INSERT INTO delivery_delivery (campaign_id, recipient_id, status, skip_reason, finished_at)
SELECT %s, c.id,
       CASE WHEN NOT c.is_active OR c.opted_out OR c.aad_object_id IS NULL THEN 'skipped' ELSE 'pending' END,
       CASE WHEN NOT c.is_active THEN 'inactive' WHEN c.opted_out THEN 'opted_out'
            WHEN c.aad_object_id IS NULL THEN 'no_teams_identity' ELSE '' END,
       CASE WHEN NOT c.is_active OR c.opted_out OR c.aad_object_id IS NULL THEN now() END
  FROM (SELECT r.id, r.is_active, r.aad_object_id,
               {opted_out_sql(recipient="r.id", mandatory="%s", category="%s")} AS opted_out
          FROM campaigns_recipient r WHERE r.external_id = ANY(%s)) AS c
RETURNING status
"""


def campaign_send_direct(*, name: str, template_id: int, category: Category, external_ids: list[str]) -> Campaign:
    """Sends a message to the people named, now: a transactional notice ("your laptop is ready") or
    a test of a campaign. Every person named gets a delivery row, so none is dropped silently: those
    who left, opted out or cannot be reached are skipped with the reason; names nobody knows are
    refused before anything is sent."""
    wanted = list(dict.fromkeys(external_ids))
    known = set(Recipient.objects.filter(external_id__in=wanted).values_list("external_id", flat=True))
    unknown = [external_id for external_id in wanted if external_id not in known]
    if unknown:
        raise ApplicationError(
            f"No recipient with external id {', '.join(map(repr, unknown[:20]))}.", fields={"recipients": unknown[:100]}
        )
    with transaction.atomic():
        now = timezone.now()
        campaign = Campaign.objects.create(
            name=name, kind=Campaign.Kind.DIRECT, template_id=template_id, category=category,
            status=Campaign.Status.RUNNING, launched_at=now, materialised_at=now, total_deliveries=len(wanted),
        )
        with connection.cursor() as cursor:
            cursor.execute(DIRECT_DELIVERIES, [campaign.pk, category.mandatory, category.pk, wanted])
            skipped = sum(1 for (status,) in cursor.fetchall() if status == "skipped")
        transaction.on_commit(lambda: _after_launch(campaign.pk, 0, skipped, True))
    return campaign


def campaign_schedule(*, campaign_id: int, send_at: datetime, actor: Actor = SYSTEM) -> Campaign:
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
        approval_require(campaign=campaign, actor=actor)
        campaign.status = Campaign.Status.SCHEDULED
        campaign.send_at = send_at
        campaign.status_reason = ""
        campaign.save(update_fields=["status", "send_at", "status_reason", "updated_at"])
        actor.record(
            AuditEntry.Action.SCHEDULE, campaign=campaign,
            summary=f"Scheduled “{campaign}” for {send_at.isoformat(timespec='minutes')}", detail={"send_at": send_at},
        )
    return campaign


def campaigns_complete_finished() -> list[int]:
    """Marks completed the running announcements whose audience is fully written and in which
    every recipient has reached an end state; their counters are then rebuilt from the rows."""
    unfinished = Delivery.objects.filter(campaign_id=OuterRef("pk"), status__in=ACTIVE)
    done = list(
        Campaign.objects.filter(
            status=Campaign.Status.RUNNING, kind__in=Campaign.FED_KINDS, materialised_at__isnull=False
        )
        .exclude(Exists(unfinished))
        .values_list("id", flat=True)
    )
    if done:
        Campaign.objects.filter(pk__in=done, status=Campaign.Status.RUNNING).update(
            status=Campaign.Status.COMPLETED, completed_at=timezone.now()
        )
        for campaign_id in done:
            progress.rebuild(campaign_id)
    return done


def launch_due_campaigns() -> list[int]:
    launched = []
    due = Campaign.objects.filter(status=Campaign.Status.SCHEDULED, send_at__lte=timezone.now()).values_list("id", flat=True)
    for campaign_id in list(due):
        try:
            campaign_launch(campaign_id=campaign_id, only_if_scheduled=True)
            launched.append(campaign_id)
        except ApplicationError as exc:
            if exc.code == "approval_required":  # its audience grew past the threshold since it was scheduled
                _unschedule(campaign_id, exc.message)
            else:
                logger.info("campaign %s was launched or changed by someone else", campaign_id)
    return launched


def _unschedule(campaign_id: int, why: str) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.SCHEDULED:
            return
        campaign.status = Campaign.Status.DRAFT
        campaign.status_reason = f"Not sent at its time, back to draft: {why}"[:500]
        campaign.save(update_fields=["status", "status_reason", "updated_at"])
        SYSTEM.record(AuditEntry.Action.APPROVAL_WITHDRAWN, campaign=campaign, summary=campaign.status_reason)
