"""Follow-ups: a campaign sent, after another has completed, to some of that campaign's people. Two kinds:

- a **reminder**, to those who have not read it, acknowledged it or answered its poll: the campaign asks for it
  (``remind_who``, ``remind_after``, ``remind_times``, ``remind_template``), and the scheduler sends each when it is
  due (``reminders_send_due``), the next only once the one before has completed;
- a **send again** to those it failed for, once the cause is fixed (an app installed, a policy changed): a staff
  member's or an integration's move (``follow_up_send_again``).

A follow-up is a campaign of its own, paced and counted like any: a row that has ended never changes state
(``delivery.settled``), so the campaign it follows keeps its results, and the follow-up has its own. Its people are
those of the campaign it follows (``follows``), chosen from that campaign's rows as they are when its rows are
written (``delivery.follow_up_people``), and opt-outs are respected as for any message of its category.

Its card carries the same button and poll: an acknowledgement or an answer given on it counts for the campaign
it follows (``delivery.card_views``). What it sends was approved with that campaign: its approval covers its
reminders, their message included (``campaigns.approvals``). A follow-up is never followed up itself.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from campaigns.audit import SYSTEM, Actor
from campaigns.models import AuditEntry, Campaign, MessageTemplate
from campaigns.selectors import opted_out_people_sql
from campaigns.states import move_require
from core.errors import ApplicationError

from . import progress
from .follow_up_people import SENDING, follow_up_people, poll_closed_refuse, recalled_refuse
from .models import MessageChange, campaign_recalled
from .services import campaign_launch

logger = logging.getLogger(__name__)

Who = Campaign.FollowUp
S = Campaign.Status
NAME_MOST = 200


# --- Making one ------------------------------------------------------------------------------------------------

def follow_up_send_again(*, campaign_id: int, actor: Actor = SYSTEM) -> Campaign:
    """Sends a completed announcement again, as a campaign of its own, to the people it failed for who have not
    had it since: launched at once. When the campaign's approval no longer covers it (what it sends changed since),
    it is kept as a draft saying so, for an approver to approve and someone to launch. Raises ApplicationError,
    saying why, when it cannot be made (nothing is)."""
    with transaction.atomic():
        root = _root_locked(campaign_id)
        move_require(root, "send_again")
        _refusal_raise(root, Who.FAILED)
        follow_up = _follow_up_make(root, Who.FAILED, number=None, actor=actor)
        stopped = RawSQL(opted_out_people_sql(mandatory="%s", category="%s"),
                         [root.category.mandatory, root.category_id])
        if not follow_up_people(campaign=follow_up).exclude(pk__in=stopped).exists():  # opt-outs would skip all
            raise ApplicationError(f"Nobody is left whom “{root}” failed for: each has had it since, has opted out or "
                                   "blocked the app, or none failed.",
                                   code="nobody_to_follow_up", status=409)
        try:
            with transaction.atomic():
                campaign_launch(campaign_id=follow_up.pk, actor=actor)
        except ApplicationError as refused:
            if refused.code != "approval_required":
                raise
            follow_up.status_reason = f"Not sent: {refused.message}"[:500]
            follow_up.save(update_fields=["status_reason", "updated_at"])
    follow_up.refresh_from_db()
    return follow_up


def reminders_send_due(*, now=None) -> list[int]:
    """Sends the reminders that are due: of a completed announcement that asks for them, once ``remind_after`` has
    passed since it (or its reminder before) completed, up to ``remind_times``. Each is made once, whatever the
    number of schedulers (a reminder's number is unique to its campaign). One that cannot be sent (its approval no
    longer stands, its poll closed) is kept as a draft saying why, and no more follow: a campaign's reminders end.
    Returns the ids of the reminders launched."""
    now = now or timezone.now()
    recalled = MessageChange.objects.filter(campaign_id=OuterRef("pk"), action=MessageChange.Action.RECALL)
    # A reminder that was not sent (kept as a draft saying why) or was cancelled ends the campaign's reminders; a
    # send again kept as a draft holds them until it is launched or deleted.
    stopped = Campaign.objects.filter(Q(follow_up_number__isnull=False, status__in=(S.SCHEDULED, S.CANCELLED))
                                      | Q(status=S.DRAFT), follows_id=OuterRef("pk"))
    waiting = (
        Campaign.objects.filter(kind=Campaign.Kind.ANNOUNCEMENT, status=S.COMPLETED, follows__isnull=True,
                                remind_after__isnull=False)
        .exclude(remind_who="").exclude(Exists(recalled)).exclude(Exists(stopped))
        .annotate(reminded=Count("follow_ups", filter=Q(follow_ups__follow_up_number__isnull=False)))
        .filter(reminded__lt=F("remind_times"))
    )
    launched = []
    for root in waiting.order_by("pk"):
        if root.follow_ups.filter(status__in=SENDING).exists():
            continue  # a send again, or a reminder, sends meanwhile: the reminder waits for it to end
        due = _next_reminder(root)
        if due is None or due[1] > now:
            continue
        reminder = _remind(root.pk, number=due[0])
        if reminder is not None:
            launched.append(reminder)
    return launched


def _remind(root_id: int, *, number: int) -> int | None:
    """Makes and launches reminder ``number`` of the campaign; None when another scheduler did, or it could not be
    launched (it is then kept as a draft saying why)."""
    try:
        with transaction.atomic():
            root = _root_locked(root_id)
            if root.follow_ups.filter(follow_up_number=number).exists():
                return None  # another scheduler made it
            _refusal_raise(root, root.remind_who)
            reminder = _follow_up_make(root, root.remind_who, number=number, actor=SYSTEM)
            campaign_launch(campaign_id=reminder.pk)
            return reminder.pk
    except IntegrityError:
        return None
    except ApplicationError as refused:
        if refused.code == "follow_up_open":  # another follow-up began to send meanwhile: the next look retries
            return None
        logger.warning("reminder %s of campaign %s not sent: %s", number, root_id, refused.message)
        try:
            with transaction.atomic():
                root = _root_locked(root_id)
                if root.follow_ups.filter(follow_up_number=number).exists():
                    return None
                reminder = _follow_up_make(root, root.remind_who, number=number, actor=SYSTEM, kept=True)
                reminder.status_reason = f"Not sent: {refused.message}"[:500]
                reminder.save(update_fields=["status_reason", "updated_at"])
        except (IntegrityError, ApplicationError):
            logger.warning("reminder %s of campaign %s could not be kept as a draft either", number, root_id)
        return None


# --- Seeing them -----------------------------------------------------------------------------------------------

def follow_ups_summary(*, campaign: Campaign) -> dict[str, Any]:
    """What the Watch page says of a campaign's follow-ups: those made (each with its counts), and when the next
    reminder is due; or, for a follow-up, the campaign it follows."""
    if campaign.follows_id is not None:
        return {"follows": campaign.follows, "who": campaign.get_follow_up_who_display()}
    made = []
    for follow_up in campaign.follow_ups.order_by("pk"):
        counts = progress.read(follow_up)
        made.append({"campaign": follow_up, "who": follow_up.get_follow_up_who_display(), "sent": counts["sent"],
                     "failed": counts["failed"], "skipped": counts["skipped"], "acknowledged": counts["acknowledged"],
                     "read": counts["read"]})
    return {"follow_ups": made, "next_reminder_at": next_reminder_at(campaign=campaign)}


def next_reminder_at(*, campaign: Campaign) -> datetime | None:
    """When the campaign's next reminder is due, or None when none is coming (none asked, all sent, or one stopped)."""
    due = _next_reminder(campaign)
    return due[1] if due is not None else None


def _next_reminder(campaign: Campaign) -> tuple[int, datetime] | None:
    """The number of the campaign's next reminder and when it is due: ``remind_after`` after the campaign, or the
    reminder before, completed; None when none is coming (none asked, all sent, one still sending or stopped, or the
    campaign recalled)."""
    if not campaign.remind_who or campaign.remind_after is None or campaign.kind != Campaign.Kind.ANNOUNCEMENT:
        return None
    if campaign.status != S.COMPLETED or campaign_recalled(campaign.pk):
        return None
    reminders = list(campaign.follow_ups.filter(follow_up_number__isnull=False).order_by("-follow_up_number"))
    if len(reminders) >= campaign.remind_times:
        return None
    last = reminders[0] if reminders else None
    if last is not None and last.status != S.COMPLETED:
        return None
    since = last.completed_at if last is not None else campaign.completed_at
    if since is None:
        return None
    return (last.follow_up_number if last is not None else 0) + 1, since + campaign.remind_after


def _root_locked(campaign_id: int) -> Campaign:
    """The campaign's row, locked against another follow-up being made and a change of its message, but not against
    the presses on its card (which share-lock it only against a change of its key: ``delivery.card_views``)."""
    try:
        return Campaign.objects.select_for_update(no_key=True, of=("self",)).select_related("category").get(
            pk=campaign_id)
    except Campaign.DoesNotExist:
        raise ApplicationError(f"No campaign {campaign_id}.", code="not_found", status=404) from None


def _refusal_raise(root: Campaign, who: str) -> None:
    """Raises unless ``root`` may be followed up to ``who`` now (called with its row locked)."""
    name = f"“{root}”"
    if root.follows_id is not None:
        raise ApplicationError(f"{name} follows up another campaign: follow that one up.", code="invalid_state",
                               status=409)
    if root.status != S.COMPLETED:
        raise ApplicationError(f"{name} has not completed: it is followed up once it has sent to everyone.",
                               code="invalid_state", status=409)
    recalled_refuse(root)
    open_one = root.follow_ups.filter(status__in=(S.DRAFT, *SENDING)).order_by("pk").first()
    if open_one is not None:
        what = ("is a draft: launch it (once approved), or delete it" if open_one.status == S.DRAFT
                else "has not ended: wait for it, or cancel it")
        raise ApplicationError(f"“{open_one}” follows {name} and {what}.", code="follow_up_open", status=409)
    if who == Who.NOT_ACKNOWLEDGED and not root.acknowledgement:
        raise ApplicationError(f"{name} asks nobody to acknowledge it.", code="invalid", status=400)
    if who == Who.NOT_ANSWERED and not root.poll_question:
        raise ApplicationError(f"{name} has no poll.", code="invalid", status=400)
    poll_closed_refuse(root, who)


def _follow_up_make(root: Campaign, who: str, *, number: int | None, actor: Actor, kept: bool = False) -> Campaign:
    """The follow-up, as a draft: what the campaign sends (its reminder's own words, for a reminder that has them;
    else its message as it is now, its latest edit included), to its audience's category, with the same button,
    poll and counting of clicks."""
    own_words = root.remind_template_id if number is not None else None
    unmade = False
    try:
        template_id = own_words or _message_now(root)
    except ApplicationError:
        if not kept:
            raise
        # Only kept, to say why it was not sent, and cancelled: never launched with words it was not to send.
        template_id, unmade = root.template_id, True
    label = f"Reminder {number}" if number is not None else "Sent again"
    follow_up = Campaign.objects.create(
        name=f"{label}: {root.name}"[:NAME_MOST], kind=Campaign.Kind.ANNOUNCEMENT, template_id=template_id,
        audience_id=root.audience_id, category_id=root.category_id, install_app=root.install_app, urgent=root.urgent,
        urgent_text=root.urgent_text, acknowledgement=root.acknowledgement, poll_question=root.poll_question,
        poll_options=root.poll_options, poll_multiple=root.poll_multiple, poll_closes_at=root.poll_closes_at,
        track_clicks=root.track_clicks, follows=root, follow_up_who=who, follow_up_number=number,
        follow_up_resends=own_words is None,
        created_by=actor.user if getattr(actor.user, "pk", None) else None,
        **({"status": S.CANCELLED, "cancelled_at": timezone.now()} if unmade else {}),
    )
    actor.record(AuditEntry.Action.FOLLOW_UP, campaign=follow_up,
                 summary=f"{label} of “{root}” to {Who(who).label.lower()}")
    return follow_up


def _message_now(root: Campaign) -> int:
    """The template of the campaign's message as it is now: its own, or, once the sent message was edited, a copy of
    the latest edit (kept as a template of its own, named for it)."""
    edit = MessageChange.objects.filter(campaign_id=root.pk, action=MessageChange.Action.EDIT).order_by("-id").first()
    if edit is None:
        return root.template_id
    name = f"Edit {edit.pk} of campaign {root.pk}, version {root.message_version}: {root.template.name}"
    copy, _ = MessageTemplate.objects.get_or_create(
        name=name[:NAME_MOST], defaults={"kind": edit.kind, "text": edit.text or "", "card": edit.card})
    if (copy.kind, copy.text or "", copy.card) != (edit.kind, edit.text or "", edit.card):
        raise ApplicationError(f"A template named “{copy.name}” is not the edited message: rename it, then try again.",
                               code="invalid_state", status=409)
    return copy.pk


__all__ = ["follow_ups_summary", "next_reminder_at", "follow_up_send_again", "reminders_send_due"]
