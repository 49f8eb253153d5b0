"""Controlling a running campaign: pause, resume, cancel, and pausing itself when too many sends fail.

A stop is recorded twice: in the campaign row (so no queued task can claim a delivery of it any
more) and as a flag in Redis that every worker checks right before each call to Teams (so a worker
already past its claim stops too). Cancel then waits for the calls already on the wire, so that
nothing is sent after it has answered.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bots.pacing import pacer
from campaigns.audit import SYSTEM, Actor
from campaigns.models import AuditEntry, Campaign, MemberListing
from campaigns.states import MOVES, move_require
from core.channels import TransportError
from core.errors import ApplicationError

from . import feeding, jobs, progress, webhooks
from .models import Delivery, campaign_ids
from .notifying import notices_drop
from .settled import settled_below

logger = logging.getLogger(__name__)


def _locked(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def campaign_pause(*, campaign_id: int, reason: str = "", actor: Actor = SYSTEM) -> Campaign:
    with transaction.atomic():
        campaign = _locked(campaign_id)
        move_require(campaign, "pause")
        campaign.status = MOVES["pause"].target
        campaign.status_reason = reason[:500] or "Paused by a person."
        campaign.save(update_fields=["status", "status_reason", "updated_at"])
        actor.record(AuditEntry.Action.PAUSE, campaign=campaign, summary=f"Paused “{campaign}”: {campaign.status_reason}")
        pacer.stop(campaign_id=campaign.pk, reason="paused")
    return campaign


def campaign_pause_saying(*, campaign_id: int, reason: str) -> None:
    """Crier pauses the campaign, saying why; if it was paused or cancelled meanwhile, a paused one still shows
    the reason."""
    try:
        campaign_pause(campaign_id=campaign_id, reason=reason)
    except ApplicationError:  # paused or cancelled meanwhile: the reason is still worth showing
        Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.PAUSED).update(status_reason=reason[:500])


def campaign_resume(*, campaign_id: int, actor: Actor = SYSTEM) -> Campaign:
    with transaction.atomic():
        campaign = _locked(campaign_id)
        move_require(campaign, "resume")
        campaign.status = MOVES["resume"].target
        campaign.status_reason = ""
        campaign.save(update_fields=["status", "status_reason", "updated_at"])
        actor.record(AuditEntry.Action.RESUME, campaign=campaign, summary=f"Resumed “{campaign}”")
        # Retries that came due while it was paused are due now; pending rows are fed anew.
        campaign.deliveries.filter(status=Delivery.Status.RETRYING).update(next_attempt_at=timezone.now())
        # A campaign to a group or team paused before its rows were written (its listing failed) lists again.
        listed = campaign.materialised_at is None and MemberListing.objects.filter(campaign=campaign).exists()
        transaction.on_commit(lambda: _after_resume(campaign.pk, listed, installs=campaign.install_app,
                                                    notices=campaign.urgent))
    return campaign


def _after_resume(campaign_id: int, listed: bool, *, installs: bool, notices: bool = False) -> None:
    if listed:
        jobs.list_members(campaign_id)
    pacer.resume(campaign_id=campaign_id)
    try:  # a fresh start for the error watch, or it would pause again at the next failure
        progress.client().hdel(progress.key(campaign_id), "systemic")
    except redis.RedisError:
        pass
    feeding.rewind(campaign_id)
    jobs.feed()
    if installs:  # rows may have waited for the app to be installed
        jobs.install_apps()
    if notices:  # urgent notices held by the pause
        jobs.send_notices()


def campaign_cancel(*, campaign_id: int, actor: Actor = SYSTEM) -> Campaign:
    """Stops a campaign for good: whoever has not been sent to is skipped, visibly. Returns once
    the calls already on their way to Teams have been answered (or ``CANCEL_DRAIN_SECONDS``)."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        move_require(campaign, "cancel")
        pacer.stop(campaign_id=campaign.pk, reason="cancelled")
        campaign.status = MOVES["cancel"].target
        campaign.cancelled_at = timezone.now()
        campaign.save(update_fields=["status", "cancelled_at", "updated_at"])
        actor.record(AuditEntry.Action.CANCEL, campaign=campaign, summary=f"Cancelled “{campaign}”")
        # The campaign's rows from where unfinished ones begin (delivery.settled) to its last.
        skip = (
            "UPDATE delivery_delivery SET status = 'skipped', skip_reason = 'campaign_cancelled', finished_at = now()"
            " WHERE campaign_id = %s AND id >= %s AND id < %s AND status IN ('pending', 'retrying', 'installing')"
        )
        rows = [campaign.pk, settled_below(campaign.pk, campaign.settled_below), campaign_ids(campaign.pk)[1]]
        with connection.cursor() as cursor:
            if "delivery.skipped" in (wanted := webhooks.wanted_types()):
                cursor.execute(
                    f"WITH done AS ({skip} {webhooks.DELIVERY_RETURNING}), "
                    f"events AS ({webhooks.delivery_events_sql(returning='done')}) SELECT count(*) FROM done",
                    [*rows, list(wanted)],
                )
                skipped = cursor.fetchone()[0]
            else:
                cursor.execute(skip, rows)
                skipped = cursor.rowcount
    progress.record(campaign.pk, skipped=skipped)
    deadline = time.monotonic() + settings.CANCEL_DRAIN_SECONDS
    while campaign.deliveries.filter(status=Delivery.Status.SENDING).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if campaign.urgent:
        notices_drop(campaign_id=campaign.pk)  # the sends that drained included
    return campaign


def campaign_watch_errors(*, campaign_id: int, error: TransportError) -> None:
    """Pauses a campaign whose sends fail for reasons that are not about one person (bad
    credentials, Teams errors, timeouts) once they pass ``CAMPAIGN_PAUSE_ERROR_RATE`` of at least
    ``CAMPAIGN_PAUSE_MIN_FAILURES`` finished sends."""
    if error.personal:  # the channel said it is about one person
        return
    try:
        client = progress.client()
        key = progress.key(campaign_id)
        systemic = client.hincrby(key, "systemic", 1)
        sent, failed = (int(v or 0) for v in client.hmget(key, "sent", "failed"))
    except redis.RedisError:
        return
    if systemic < settings.CAMPAIGN_PAUSE_MIN_FAILURES:
        return
    share = systemic / max(1, sent + failed)
    if share < settings.CAMPAIGN_PAUSE_ERROR_RATE:
        return
    reason = (
        f"Paused automatically: {share:.0%} of finished sends failed for reasons that are not about one person; "
        f"the latest was {error.status or 'no answer'} {error.code}: {error.message[:200]}"
    )
    try:
        campaign_pause(campaign_id=campaign_id, reason=reason)
        logger.warning("campaign %s: %s", campaign_id, reason)
    except ApplicationError:
        pass  # already paused, cancelled or finished


def campaign_installs_stop(*, campaign_id: int, actor: Actor = SYSTEM) -> Campaign:
    """The campaign no longer installs the app (the way out when Graph refuses its installs and nobody will fix
    that): its rows waiting for an install are sent as they are, and Teams' answer for those who lack the app is
    their outcome. Recorded in the audit trail."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        move_require(campaign, "stop_installing")
        campaign.install_app = False
        campaign.save(update_fields=["install_app", "updated_at"])
        actor.record(AuditEntry.Action.CHANGE, campaign=campaign,
                     summary=f"Stopped installing the app for the people “{campaign}” reaches who lack it")
        first, end = settled_below(campaign.pk, campaign.settled_below), campaign_ids(campaign.pk)[1]
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE delivery_delivery SET status = 'retrying', next_attempt_at = now(), claimed_at = NULL,"
                " install = '' WHERE campaign_id = %s AND id >= %s AND id < %s AND status = 'installing' RETURNING id",
                [campaign.pk, first, end])
            waiting = [delivery_id for (delivery_id,) in cursor.fetchall()]
        if campaign.status == Campaign.Status.RUNNING and waiting:  # a paused one's are fed at its resume
            queue = feeding.queue_for(campaign.kind)
            transaction.on_commit(lambda: feeding.publish(waiting, queue=queue))
    return campaign
