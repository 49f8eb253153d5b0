"""The reconciler: whatever happens to workers and to Redis, every delivery reaches an end state.

Run by beat every ``RECONCILE_INTERVAL_SECONDS``. PostgreSQL is the truth; Redis only carries work
in flight, so anything Redis lost is found again in the rows:

* **sending past its lease**: the worker died (kill -9, out of memory, a lost machine) between its
  claim and its record. Whether Teams accepted the message cannot be known, so the delivery is
  marked ``ambiguous`` and tried again (the policy, and why, is in docs/architecture.md: "Delivery
  guarantees"). The lease is longer than the longest a live task may take (its hard time limit).
* **retrying past its time**: the retry's countdown message was lost with a worker or with Redis.
* **installing, with no installer at work**: its task was lost, or a row came due after the last one finished
  (``delivery.installing``).
* **pending, though fed more than ``RETRY_GRACE_SECONDS`` ago**: the queued message was lost (a
  worker killed with messages it had prefetched; a Redis restart empties the feeder's cursors too,
  so the feeder itself starts again). Only those rows are queued again: a message still waiting
  in the queue is a few seconds' work away, and queuing the rest again would only crowd it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from campaigns.members import listing_held
from campaigns.models import Campaign, MemberListing
from core.connections import redis_clock

from . import feeding, jobs, progress, webhooks
from .installing import installer_check
from .notifying import notifier_check
from .models import Delivery, campaign_ids
from .settled import first_unsettled, settled_below
from .welcome import welcome_campaign, welcome_enqueue

logger = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost"
WORKER_LOST_MESSAGE = "The worker stopped while sending; Teams may have accepted the message."
# A delivery whose worker died on its last attempt fails; the others are tried again. Both are ambiguous.
FAIL_EXPIRED_LEASES = f"""
UPDATE delivery_delivery AS d
   SET status = 'failed', ambiguous = true, finished_at = now(), last_status_code = NULL,
       error_code = '{WORKER_LOST}', error_message = '{WORKER_LOST_MESSAGE}'
 WHERE d.status = 'sending' AND d.claimed_at < %s AND d.attempts >= %s
{webhooks.DELIVERY_RETURNING}, (SELECT o.ambiguous FROM delivery_delivery AS o WHERE o.id = d.id) AS was_ambiguous
"""
TAKE_BACK_EXPIRED_LEASES = f"""
UPDATE delivery_delivery AS d
   SET status = 'retrying', ambiguous = true, next_attempt_at = now(),
       error_code = '{WORKER_LOST}', error_message = '{WORKER_LOST_MESSAGE}'
 WHERE d.status = 'sending' AND d.claimed_at < %s
RETURNING d.id, d.campaign_id, (SELECT o.ambiguous FROM delivery_delivery AS o WHERE o.id = d.id) AS was_ambiguous
"""


def reconcile() -> dict[str, int]:
    now = timezone.now()
    lease_start = now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    with connection.cursor() as cursor:
        # Every attempt counts, those whose worker died too: the last one ends the delivery.
        cursor.execute(
            f"WITH done AS ({FAIL_EXPIRED_LEASES}), events AS ({webhooks.delivery_events_sql(returning='done')})"
            " SELECT campaign_id, was_ambiguous FROM done",
            [lease_start, settings.DELIVERY_MAX_ATTEMPTS, list(webhooks.wanted_types())],
        )
        failed = cursor.fetchall()
        cursor.execute(TAKE_BACK_EXPIRED_LEASES, [lease_start])
        expired = cursor.fetchall()
    for campaign_id, was_ambiguous in failed:
        progress.record(campaign_id, failed=1, ambiguous=0 if was_ambiguous else 1)
    if failed:
        logger.warning("failed %d deliveries whose worker stopped while sending their last attempt", len(failed))
    for _, campaign_id, was_ambiguous in expired:
        if not was_ambiguous:
            progress.record(campaign_id, ambiguous=1)
    if expired:
        logger.warning("took back %d deliveries whose worker stopped while sending", len(expired))

    swept = _skip_what_cancelled_campaigns_left(now)
    restarted = _restart_lost_materialisations(now)

    overdue = list(
        Delivery.objects.filter(
            status=Delivery.Status.RETRYING,
            next_attempt_at__lt=now - timedelta(seconds=settings.RETRY_GRACE_SECONDS),
            campaign__status=Campaign.Status.RUNNING,  # a paused campaign's retries wait for its resume
        )
        .order_by("id")
        .values_list("id", flat=True)[: settings.FEED_HIGH_WATER]
    )
    # Those just taken back are due now; each goes back on its campaign kind's queue.
    overdue = sorted(set(overdue) | {delivery_id for delivery_id, *_ in expired})
    by_queue: dict[str, list[int]] = {}
    for delivery_id, kind in Delivery.objects.filter(id__in=overdue).order_by("id").values_list("id", "campaign__kind"):
        by_queue.setdefault(feeding.queue_for(kind), []).append(delivery_id)
    for queue, ids in by_queue.items():
        feeding.publish(ids, queue=queue)

    fed_again = _queue_again_what_was_fed_and_lost()
    # Welcome deliveries are queued directly, not fed: re-queue those left pending for long.
    welcome = welcome_campaign()
    # (A welcome campaign's rows are written one new hire at a time, in no order: no mark for it.)
    welcome_lost = [] if welcome is None else list(
        Delivery.objects.of_campaign(welcome.pk).filter(
            status=Delivery.Status.PENDING,
            created_at__lt=now - timedelta(seconds=settings.RETRY_GRACE_SECONDS),
        ).values_list("id", flat=True)[: settings.FEED_HIGH_WATER]
    )
    welcome_enqueue(welcome_lost)
    installer = installer_check()
    notifier = notifier_check()
    return {
        "lease_expired": len(expired) + len(failed),
        "requeued": len(overdue) + len(welcome_lost),
        "fed_again": fed_again,
        "swept": swept,
        "materialisations_restarted": restarted,
        "installer_started": int(installer),
        "notifier_started": int(notifier),
    }


def _queue_again_what_was_fed_and_lost() -> int:
    """Rows fed more than ``RETRY_GRACE_SECONDS`` ago and still pending are queued again, each at
    most once a grace: rows queued again are given that long before they count as lost again. The
    search starts past the rows an earlier look found settled."""
    now = redis_clock(feeding.broker())
    moment = now - settings.RETRY_GRACE_SECONDS
    running = Campaign.objects.filter(status=Campaign.Status.RUNNING, kind__in=Campaign.FED_KINDS)
    queued = 0
    for campaign_id, kind, mark in running.values_list("id", "kind", "settled_below"):
        fed = feeding.fed_before(campaign_id, moment)
        if not fed:
            continue
        check = feeding.lost_check(campaign_id)
        start = max(settled_below(campaign_id, mark), check.clean + 1)
        waiting = check.at > moment and check.requeued >= start
        lost = list(
            Delivery.objects.of_campaign(campaign_id)
            .filter(status=Delivery.Status.PENDING, id__gte=check.requeued + 1 if waiting else start, id__lte=fed)
            .order_by("id")
            .values_list("id", flat=True)[: settings.FEED_HIGH_WATER]
        )
        feeding.publish(lost, queue=feeding.queue_for(kind))
        queued += len(lost)
        feeding.lost_checked(campaign_id, feeding.LostCheck(
            clean=check.clean if waiting else (lost[0] - 1 if lost else fed),
            requeued=lost[-1] if lost else check.requeued,
            at=now if lost else check.at,
        ))
    return queued


def _skip_what_cancelled_campaigns_left(now) -> int:
    """A send in flight at the cancel that then failed, or a worker that died during it, leaves a
    row retrying in a campaign nobody will claim for again: it ends skipped, like the rest."""
    swept = 0
    recent = Campaign.objects.filter(
        status=Campaign.Status.CANCELLED, cancelled_at__gte=now - timedelta(days=1)
    ).values_list("id", "settled_below")
    for campaign_id, mark in recent:
        first = first_unsettled(campaign_id, mark)
        if first is None:
            continue
        count = Delivery.objects.of_campaign(campaign_id).filter(
            id__gte=first, status__in=(Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.INSTALLING)
        ).update(status=Delivery.Status.SKIPPED, skip_reason=Delivery.SkipReason.CAMPAIGN_CANCELLED, finished_at=now)
        if count:
            progress.record(campaign_id, skipped=count)
            swept += count
    return swept


def _restart_lost_materialisations(now) -> int:
    """A running campaign whose rows are not all written, and whose writing task is gone (Redis
    lost its message, or the worker died), is written on from the last person it has."""
    from .materialising import materialising_key

    restarted = 0
    stalled = Campaign.objects.filter(
        status=Campaign.Status.RUNNING,
        kind__in=Campaign.FED_KINDS,
        materialised_at__isnull=True,
        launched_at__lt=now - timedelta(seconds=settings.RETRY_GRACE_SECONDS),
    ).values_list("id", "total_deliveries")
    for campaign_id, written in stalled:
        state = _listing_state(campaign_id, now)
        if state == "busy":
            continue
        if progress.client().exists(materialising_key(campaign_id)):
            continue
        # Its rows wait for a listing of its group or team that nobody is making, or for the look at the people
        # listed (more than it may reach?) that comes before its first row: both are the listing task's.
        if state == "lost" or (state == "done" and not written):
            jobs.list_members(campaign_id)
            restarted += 1
            continue
        highest = Delivery.objects.of_campaign(campaign_id).aggregate(highest=Max("id"))["highest"]
        last = highest - campaign_ids(campaign_id)[0] if highest is not None else 0
        jobs.materialise(campaign_id, last)
        restarted += 1
    return restarted


def _listing_state(campaign_id: int, now) -> str:
    """For a campaign launched to a group or team: ``done`` when the launch's listing succeeded; ``busy`` while a
    task lists it; ``lost`` when no task does (its task was lost, its worker died, or it failed and the campaign
    was not paused); ``none`` for any other campaign."""
    listing = MemberListing.objects.filter(campaign_id=campaign_id).order_by("-id").first()
    if listing is None:
        return "none"
    if listing.status == MemberListing.Status.SUCCEEDED:
        return "done"
    if listing.status == MemberListing.Status.FAILED:
        return "lost"
    young = listing.started_at >= now - timedelta(seconds=settings.RETRY_GRACE_SECONDS)
    return "busy" if young or listing_held(listing.pk) else "lost"
