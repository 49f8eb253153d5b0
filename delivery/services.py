"""Campaign lifecycle: launch, schedule, complete, direct messages; pause, resume and cancel live in
``delivery.control`` and are re-exported here, so callers (API, admin) have one module to use. Writing
an audience's delivery rows is ``delivery.materialising``'s."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from bots.pacing import pacer
from campaigns.approvals import (
    ApprovalOutgrown, approval_require, approval_void_outgrown, direct_reach_require, follow_ups_fingerprint,
)
from campaigns.audit import SYSTEM, Actor
from campaigns.members import listing_start
from campaigns.models import Audience, AuditEntry, Campaign, Category, MessageTemplate, Recipient
from campaigns.models.content import WELCOME_NOT_LISTED, acknowledgement_problems, clicks_problems, poll_problems
from campaigns.selectors import opted_out_sql
from campaigns.states import MOVES, move_allowed, move_require
from core.errors import ApplicationError

from . import feeding, jobs, progress
from .control import campaign_cancel, campaign_installs_stop, campaign_pause, campaign_resume
from .follow_up_people import follow_up_launch_require
from .materialising import deliveries_materialise_chunk, materialising_key
from .models import Delivery, campaign_ids, delivery_id
from .reach import require_within_reach
from .reports import reasons_key
from .settled import first_unsettled

__all__ = [
    "campaign_cancel",
    "campaign_installs_stop",
    "campaign_launch",
    "campaign_pause",
    "campaign_resume",
    "campaign_schedule",
    "campaign_send_direct",
    "campaigns_complete_finished",
    "deliveries_delete",
    "launch_due_campaigns",
]

logger = logging.getLogger(__name__)


def campaign_launch(*, campaign_id: int, only_if_scheduled: bool = False, actor: Actor = SYSTEM) -> Campaign:
    """Starts a campaign now. The first chunk of delivery rows is written in the launching
    transaction (a small campaign is complete at once); the rest by a task, chunk by chunk, while
    sending has already begun. Launching twice is refused, so two schedulers racing for the same
    campaign launch it once. A large announcement needs its approval (``campaigns.approvals``); one
    that would reach more people than its approval showed voids it."""
    with _voiding_outgrown_approval(campaign_id), transaction.atomic():
        # Its template's row first (then the campaign's, the order an edit of the template takes):
        # an edit under way finishes first, and this launch then sees it (``template_edit_require``).
        # Its audience's row too: an edit of the audience's lists waits until this launch's rows are
        # written, rather than landing between the approval check and them. (The category's row is
        # locked with the campaign's below: FOR UPDATE takes every row the query joins.) The rows of a
        # large audience's later ranges are written after this commit, from the audience as it is then.
        for content in (MessageTemplate, Audience):
            list(content.objects.select_for_update(of=("self",)).filter(campaigns__pk=campaign_id).values_list(
                "pk", flat=True
            ))
        campaign = Campaign.objects.select_for_update().select_related("category").get(pk=campaign_id)
        move = "launch_at_its_time" if only_if_scheduled else "launch"
        move_require(campaign, move)
        if campaign.follows_id is not None:
            follow_up_launch_require(campaign=campaign)
        _asks_require(campaign)
        approval_require(campaign=campaign, actor=actor)
        # What its approval covers of what its follow-ups will send, as launched (delivery.follow_ups).
        campaign.follow_ups_fingerprint = (follow_ups_fingerprint(campaign=campaign)
                                           if campaign.approved_at is not None and campaign.follows_id is None else "")
        _stale_state_drop(campaign.pk)  # before any of its rows can be fed, sent and counted
        campaign.status = MOVES[move].target
        campaign.launched_at = timezone.now()
        campaign.status_reason = ""  # why it was paused or sent back before: over now
        try:
            with transaction.atomic():
                campaign.save(update_fields=["status", "launched_at", "status_reason", "follow_ups_fingerprint",
                                             "updated_at"])
        except IntegrityError as exc:
            raise ApplicationError(
                "Another welcome campaign is running; cancel it before launching this one.",
                code="welcome_already_running",
                status=409,
            ) from exc
        when = " at its scheduled time" if only_if_scheduled else ""
        actor.record(AuditEntry.Action.LAUNCH, campaign=campaign, summary=f"Launched “{campaign}”{when}{_installs(campaign)}")
        # A follow-up's people are those of the campaign it follows, from its rows (delivery.follow_ups).
        listed = (campaign.follows_id is None and campaign.audience_id is not None
                  and campaign.audience.kind in Audience.LISTED_KINDS)
        if listed and campaign.kind == Campaign.Kind.WELCOME:
            raise ApplicationError(WELCOME_NOT_LISTED, code="invalid", status=400, fields={"audience": [WELCOME_NOT_LISTED]})
        if listed and campaign.kind == Campaign.Kind.ANNOUNCEMENT:
            # Its people are listed from Entra ID or Teams first, by a task (delivery.listing), then written.
            listing_start(audience=campaign.audience, campaign=campaign)
            transaction.on_commit(lambda: _after_listed_launch(campaign.pk))
        elif campaign.kind == Campaign.Kind.ANNOUNCEMENT:
            lowest = Recipient.objects.aggregate(lowest=Min("id"))["lowest"] or 1
            last_id, inserted, skipped, finished = deliveries_materialise_chunk(campaign=campaign, after=lowest - 1)
            require_within_reach(campaign=campaign, rows=inserted)
            transaction.on_commit(lambda: _after_launch(campaign.pk, last_id, skipped, finished))
    return campaign


@contextmanager
def _voiding_outgrown_approval(campaign_id: int):
    """A launch or schedule refused because the campaign outgrew its approval rolls back; the
    approval is then voided, with the reason on the campaign, and the refusal goes on."""
    try:
        yield
    except ApprovalOutgrown as exc:
        approval_void_outgrown(campaign_id=campaign_id, reason=exc.message)
        raise


def _stale_state_drop(campaign_id: int) -> None:
    """What Redis holds for the campaign's id before it has any row belongs to another database's campaign of that
    id (a database made afresh, or restored, while Redis kept running), or to an earlier launch that wrote nothing:
    its counters, the feeder's cursor and the reconciler's last look, the mark of a writing task, the cached
    reasons. Dropped, each is made again from the rows."""
    progress.forget(campaign_id)
    try:
        feeding.rewind(campaign_id)
        progress.client().delete(materialising_key(campaign_id), reasons_key(campaign_id))
    except redis.RedisError:
        logger.warning("could not drop what Redis held for campaign %s before its launch", campaign_id)


def _unstopped(campaign_id: int) -> None:
    """A campaign launched again (sent back to draft while paused) sends: a stop flag left from before goes."""
    try:
        pacer.resume(campaign_id=campaign_id)
    except redis.RedisError:
        logger.warning("could not lift an old stop flag of campaign %s", campaign_id)


def _after_launch(campaign_id: int, last_id: int, skipped: int, finished: bool) -> None:
    _unstopped(campaign_id)
    progress.record(campaign_id, skipped=skipped, start=True)
    jobs.feed()
    if not finished:
        jobs.materialise(campaign_id, last_id)


def _after_listed_launch(campaign_id: int) -> None:
    _unstopped(campaign_id)
    progress.record(campaign_id, start=True)
    jobs.list_members(campaign_id)


def deliveries_delete(*, campaign_id: int | None = None, recipient_id: int | None = None) -> int:
    """Deletes the delivery rows of a campaign or of a person, and the changes made to them, the reactions to them and
    their acknowledgements, poll answers and clicks, found
    through the primary key (``of_campaign``, ``of_person``), before Django deletes the campaign or
    the person; returns how many rows. Raw deletes: Django's would load every row first."""
    rows = Delivery.objects.of_campaign(campaign_id) if campaign_id is not None else Delivery.objects.of_person(recipient_id)
    ids, params = rows.values("pk").query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM delivery_deliverychange WHERE delivery_id IN ({ids})", params)
        for table in ("delivery_reaction", "delivery_acknowledgement", "delivery_pollanswer", "delivery_click"):
            if campaign_id is not None:  # its whole range: a reaction made while the rows went goes too
                cursor.execute(f"DELETE FROM {table} WHERE delivery_id >= %s AND delivery_id < %s",
                               list(campaign_ids(campaign_id)))
            else:
                cursor.execute(f"DELETE FROM {table} WHERE delivery_id IN ({ids})", params)
        cursor.execute(f"DELETE FROM delivery_delivery WHERE id IN ({ids})", params)
        return cursor.rowcount


DIRECT_DELIVERIES = f"""
INSERT INTO delivery_delivery (id, campaign_id, recipient_id, status, skip_reason, finished_at)
SELECT %s + c.id, %s, c.id,
       CASE WHEN NOT c.is_active OR c.opted_out OR c.aad_object_id IS NULL THEN 'skipped' ELSE 'pending' END,
       CASE WHEN NOT c.is_active THEN 'inactive' WHEN c.opted_out THEN 'opted_out'
            WHEN c.aad_object_id IS NULL THEN 'no_teams_identity' ELSE '' END,
       CASE WHEN NOT c.is_active OR c.opted_out OR c.aad_object_id IS NULL THEN now() END
  FROM (SELECT r.id, r.is_active, r.aad_object_id,
               {opted_out_sql(recipient="r.id", mandatory="%s", category="%s")} AS opted_out
          FROM campaigns_recipient r WHERE r.external_id = ANY(%s)) AS c
RETURNING status
"""


def campaign_send_direct(
    *, name: str, template_id: int, category: Category, external_ids: list[str], actor: Actor = SYSTEM,
    asking_like: Campaign | None = None,
) -> Campaign:
    """Sends a message to the people named, now: a transactional notice ("your laptop is ready") or
    a test of a campaign. Every person named gets a delivery row, so none is dropped silently: those
    who left, opted out or cannot be reached are skipped with the reason; names nobody knows are
    refused before anything is sent. A test of a campaign that asks for an acknowledgement or has a
    poll (``asking_like``) asks the same, so the test is the message its people get."""
    wanted = list(dict.fromkeys(external_ids))
    known = dict(Recipient.objects.filter(external_id__in=wanted).values_list("external_id", "id"))
    unknown = [external_id for external_id in wanted if external_id not in known]
    if unknown:
        raise ApplicationError(
            f"No recipient with external id {', '.join(map(repr, unknown[:20]))}.", fields={"recipients": unknown[:100]}
        )
    with transaction.atomic():
        # Reach, not one call, needs approval: the sender's row stays locked until this commits.
        approved = direct_reach_require(
            template_id=template_id, recipient_ids=[known[external_id] for external_id in wanted], actor=actor
        )
        now = timezone.now()
        campaign = Campaign.objects.create(
            name=name, kind=Campaign.Kind.DIRECT, template_id=template_id, category=category,
            status=Campaign.Status.RUNNING, launched_at=now, materialised_at=now, total_deliveries=len(wanted),
            created_by=actor.user, api_key=actor.api_key, approved_at=now if approved else None,
            install_app=False,  # a notice or a test to named people installs nothing: no approval covers it
            **asks_of(asking_like),
        )
        _stale_state_drop(campaign.pk)
        with connection.cursor() as cursor:
            cursor.execute(DIRECT_DELIVERIES, [delivery_id(campaign.pk, 0), campaign.pk, category.mandatory, category.pk, wanted])
            skipped = sum(1 for (status,) in cursor.fetchall() if status == "skipped")
        if approved == "key":
            actor.record(AuditEntry.Action.APPROVE, campaign=campaign,
                         summary=f"Approved and sent the direct message “{campaign}” to {len(wanted)} people")
        transaction.on_commit(lambda: _after_launch(campaign.pk, 0, skipped, True))
    return campaign


def campaign_schedule(*, campaign_id: int, send_at: datetime, actor: Actor = SYSTEM) -> Campaign:
    if send_at <= timezone.now():
        raise ApplicationError(
            "send_at must be in the future; launch the campaign to send it now.", fields={"send_at": ["Must be in the future."]}
        )
    with _voiding_outgrown_approval(campaign_id), transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        move_require(campaign, "schedule")
        _asks_require(campaign)
        if campaign.poll_question and campaign.poll_closes_at is not None and campaign.poll_closes_at <= send_at:
            raise ApplicationError(
                f"“{campaign}”'s poll closes before it would be sent: close it later, or send it sooner.",
                code="asks_invalid", status=409, fields={"poll_closes_at": ["Before the time it is sent."]})
        approval_require(campaign=campaign, actor=actor)
        campaign.status = MOVES["schedule"].target
        campaign.send_at = send_at
        campaign.status_reason = ""
        campaign.save(update_fields=["status", "send_at", "status_reason", "updated_at"])
        actor.record(
            AuditEntry.Action.SCHEDULE, campaign=campaign,
            summary=f"Scheduled “{campaign}” for {send_at.isoformat(timespec='minutes')}{_installs(campaign)}",
            detail={"send_at": send_at},
        )
    return campaign


def _installs(campaign: Campaign) -> str:
    """Said in the audit trail: the campaign installs the app in people's Teams (``delivery.installing``)."""
    return ", installing the app for people who lack it" if campaign.install_app else ""


def campaigns_complete_finished() -> list[int]:
    """Marks completed the running announcements whose audience is fully written and in which
    every recipient has reached an end state; their counters are then rebuilt from the rows."""
    completes = MOVES["complete"]
    written = Campaign.objects.filter(status__in=completes.sources, kind__in=Campaign.FED_KINDS, materialised_at__isnull=False)
    done = [
        campaign_id for campaign_id, mark in written.values_list("id", "settled_below")
        if first_unsettled(campaign_id, mark) is None
    ]
    if done:
        Campaign.objects.filter(pk__in=done, status__in=completes.sources).update(
            status=completes.target, completed_at=timezone.now()
        )
        for campaign_id in done:
            progress.rebuild(campaign_id)
    return done


def _asks_require(campaign: Campaign) -> None:
    """Raises unless what the campaign asks still holds as it goes out (checked when it was saved, but its category
    may have been made optional since, or its poll's closing time passed): a policy reaches everyone, and a poll
    is open."""
    problems = {**acknowledgement_problems(kind=campaign.kind, acknowledgement=campaign.acknowledgement,
                                           category_mandatory=campaign.category.mandatory),
                # A follow-up's poll is its campaign's, which may have closed: its card then shows it closed.
                **poll_problems(question=campaign.poll_question, options=campaign.poll_options,
                                closes_at=campaign.poll_closes_at, closes_changed=campaign.follows_id is None),
                **clicks_problems(track_clicks=campaign.track_clicks)}
    if problems:
        raise ApplicationError(f"“{campaign}” cannot be sent as it is: {next(iter(problems.values()))}",
                               code="asks_invalid", status=409, fields={k: [v] for k, v in problems.items()})


ASKING_FIELDS = ("acknowledgement", "poll_question", "poll_options", "poll_multiple", "poll_closes_at", "track_clicks")


def asks_of(campaign: Campaign | None) -> dict[str, Any]:
    """The fields of what ``campaign`` asks of its people, to ask the same in another (its test)."""
    if campaign is None:
        return {}
    fields = {name: getattr(campaign, name) for name in ASKING_FIELDS}
    if fields["poll_closes_at"] is not None and fields["poll_closes_at"] <= timezone.now():
        fields["poll_closes_at"] = None  # a test of a poll that closed can still be answered
    return fields


def launch_due_campaigns() -> list[int]:
    launched = []
    due = Campaign.objects.filter(
        status__in=MOVES["launch_at_its_time"].sources, send_at__lte=timezone.now()
    ).values_list("id", flat=True)
    for campaign_id in list(due):
        try:
            campaign_launch(campaign_id=campaign_id, only_if_scheduled=True)
            launched.append(campaign_id)
        except ApplicationError as exc:
            # Its audience grew past the threshold since it was scheduled, or what it asks no longer holds.
            if exc.code in ("approval_required", "asks_invalid"):
                _unschedule(campaign_id, exc.message)
            else:
                logger.info("campaign %s was launched or changed by someone else", campaign_id)
    return launched


def _unschedule(campaign_id: int, why: str) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not move_allowed(campaign, "unschedule"):
            return
        campaign.status = MOVES["unschedule"].target
        campaign.status_reason = f"Not sent at its time, back to draft: {why}"[:500]
        campaign.save(update_fields=["status", "status_reason", "updated_at"])
        SYSTEM.record(AuditEntry.Action.APPROVAL_WITHDRAWN, campaign=campaign, summary=campaign.status_reason)
