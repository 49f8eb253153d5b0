"""Editing or recalling a campaign's sent message, for everyone who received it.

A change is one ``MessageChange`` and one ``DeliveryChange`` row per person who has the message,
written by one ``INSERT … SELECT`` over the campaign's sent deliveries, so every person it concerns
ends visibly ``done`` or ``failed``. After commit, a few chains of short chunk tasks work through the
rows (``delivery.message_change_sending``: claim, pace, call Teams, record); the last to find nothing left
completes the change, and a periodic pass takes back rows whose worker died and restarts chains
that were lost.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from campaigns.audit import audit_record
from campaigns.models import AuditEntry, Campaign
from campaigns.template_checks import validate_template
from core.connections import redis_for
from core.errors import ApplicationError

from . import jobs
from .acknowledgements import acknowledgements_clear
from .follow_up_people import SENDING as FOLLOW_UP_SENDING
from .message_change_sending import BATCH, ChunkResult, message_change_process, rows_take_back_expired
from .models import Delivery, DeliveryChange, MessageChange, campaign_ids, delivery_recalled_sql
from .notifying import notices_drop

logger = logging.getLogger(__name__)
__all__ = [
    "ChunkResult",
    "message_change_chunk",
    "message_change_complete",
    "message_change_process",
    "message_change_progress",
    "message_change_refusal",
    "message_change_start",
    "message_changes_reconcile",
    "message_current_content",
    "message_reach",
]

Row = DeliveryChange.Status
# Only a campaign that sends nothing more can have its message changed: a running one could still
# send the old text after the edit.
CHANGEABLE = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
PERMISSION = "campaigns.recall_campaign"
# New words are the author's to write (approvers recall, they do not write): an edit also needs this.
EDIT_PERMISSION = "campaigns.change_campaign"


def concurrency() -> int:
    """Chains of chunk tasks per change: calls are paced per tenant whatever this is; more chains
    hide more of Teams' answer time."""
    return max(1, settings.MESSAGE_CHANGE_CONCURRENCY)


# --- starting a change ---------------------------------------------------------------------------

# The people who have the campaign's message now: sent, with the ids Teams gave, and not recalled
# (the campaign's rows found through the primary key's range: see delivery.models).
HAVE_THE_MESSAGE = f"""
  FROM delivery_delivery AS d
 WHERE d.id >= %(lowest)s AND d.id < %(end)s AND d.campaign_id = %(campaign)s
   AND d.status = 'sent' AND d.activity_id <> '' AND d.conversation_id <> ''
   AND NOT {delivery_recalled_sql("d.id")}
"""
WRITE_ROWS = f"INSERT INTO delivery_deliverychange (change_id, delivery_id) SELECT %(change)s, d.id {HAVE_THE_MESSAGE}"


def _campaign_rows(campaign_id: int) -> dict[str, int]:
    lowest, end = campaign_ids(campaign_id)
    return {"campaign": campaign_id, "lowest": lowest, "end": end}


def message_reach(*, campaign_id: int) -> int:
    """How many people have the campaign's message now (and would be reached by an edit or a recall)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) {HAVE_THE_MESSAGE}", _campaign_rows(campaign_id))
        return cursor.fetchone()[0]


def message_current_content(*, campaign: Campaign) -> tuple[str, str, Any]:
    """What people were last sent (kind, text, card): the latest edit, else the campaign's template."""
    edit = campaign.message_changes.filter(action=MessageChange.Action.EDIT).order_by("-id").first()
    if edit is not None:
        return edit.kind, edit.text, edit.card
    template = campaign.template
    return template.kind, template.text or "", template.card


def message_change_refusal(*, campaign: Campaign) -> str | None:
    """Why this campaign's message cannot be changed now, or None."""
    name = f"“{campaign}”"
    if campaign.status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        state, wait = (
            ("still running", "let it complete")
            if campaign.status == Campaign.Status.RUNNING
            else ("paused", "resume it and let it complete")
        )
        return (
            f"{name} is {state}: cancel it (or {wait}) first; until then it could still send the old "
            "message after the change."
        )
    if campaign.status not in CHANGEABLE:
        status = campaign.get_status_display().lower()
        return f"{name} is {status}: nothing has been sent, so there is nothing to change."
    if Delivery.objects.filter(campaign_id__in=[campaign.pk, *campaign.follow_ups.values_list("pk", flat=True)],
                               status=Delivery.Status.SENDING).exists():  # its own, or a follow-up's (cancelled)
        return (
            f"{name} still has messages on their way to Teams (its cancel stopped waiting for them): "
            "try again in a minute, so that they are changed too."
        )
    sending = campaign.follow_ups.filter(status__in=FOLLOW_UP_SENDING).order_by("pk").first()
    if sending is not None:
        return (f"“{sending}” follows up {name} and has not ended: cancel it (or let it complete) first; until then it "
                "could still send the old message after the change.")
    running = campaign.message_changes.filter(status=MessageChange.Status.RUNNING).first()
    if running is not None:
        return (
            f"{'An edit' if running.is_edit else 'A recall'} of {name} is in progress "
            f"({running.done + running.failed} of {running.total} done); wait until it completes."
        )
    return None


def message_change_start(
    *,
    campaign_id: int,
    action: str,
    user: Any,
    text: str | None = None,
    card: Any = None,
    kind: str | None = None,
) -> MessageChange:
    """Edits (``action="edit"``, with the new ``text``/``card`` of ``kind``, the template's kind by
    default) or recalls (``action="recall"``) the campaign's message for everyone who has it.
    Raises ApplicationError, saying why, for every refusal; the work starts once this commits."""
    if user is None or not user.has_perm(PERMISSION):
        raise ApplicationError(
            "You are not allowed to edit or recall sent messages.", code="permission_denied", status=403
        )
    if action not in MessageChange.Action.values:
        raise ApplicationError(f"Unknown action {action!r}: use edit or recall.", fields={"action": ["Unknown."]})
    if action == MessageChange.Action.EDIT and not user.has_perm(EDIT_PERMISSION):
        raise ApplicationError(
            "Editing a sent message is for authors (who may change campaigns); you may recall it.",
            code="permission_denied", status=403,
        )
    with transaction.atomic():
        try:
            # Locked so that no other change of it can start meanwhile: the campaign's row alone, since a
            # template edit holds the template's row and then its approved campaigns' (as a launch does).
            campaign = Campaign.objects.select_for_update(of=("self",)).select_related("template").get(pk=campaign_id)
        except Campaign.DoesNotExist:
            raise ApplicationError(f"No campaign {campaign_id}.", code="not_found", status=404) from None
        refusal = message_change_refusal(campaign=campaign)
        if refusal is None and action == MessageChange.Action.EDIT and campaign.follows_id is not None:
            # Its card asks on behalf of the campaign it follows, whose versions its buttons name.
            refusal = (f"“{campaign}” follows up another campaign, and is not edited: edit that campaign's message, "
                       "or recall this one.")
        if refusal:
            raise ApplicationError(refusal, code="invalid_state", status=409)
        fields: dict[str, Any] = {}
        follow_ups_reach = _follow_ups_reach(campaign, action)
        if action == MessageChange.Action.EDIT:
            draft = campaign.follow_ups.filter(status=Campaign.Status.DRAFT).order_by("pk").first()
            if draft is not None:  # it would go out with the old words
                raise ApplicationError(
                    f"“{draft}” follows up “{campaign}” and is a draft: launch it (once approved) or delete it first.",
                    code="invalid_state", status=409)
            # New words to many people are what approval is for: above the threshold only an approver
            # edits (a recall, which only takes a message back, stays with the author). The follow-ups that
            # sent the message again are edited too (delivery.follow_ups): their people count.
            reach = message_reach(campaign_id=campaign.pk) + sum(follow_ups_reach.values())
            if reach > settings.APPROVAL_THRESHOLD and not user.has_perm("campaigns.approve_campaign"):
                raise ApplicationError(
                    f"This edit reaches {reach} people, more than {settings.APPROVAL_THRESHOLD}: a person with the "
                    "approver role makes it.", code="approval_required", status=403,
                )
            kind = kind or campaign.template.kind
            text = text or ""
            card = card or None
            try:
                validate_template(kind=kind, text=text, card=card)
            except ValidationError as exc:
                details = exc.message_dict if hasattr(exc, "error_dict") else {"text": exc.messages}
                first = next(iter(details.values()))[0]
                raise ApplicationError(f"The new message cannot be sent: {first}", fields=details) from exc
            fields = {"kind": kind, "text": text, "card": card}
        try:
            with transaction.atomic():
                change = MessageChange.objects.create(campaign=campaign, action=action, requested_by=user, **fields)
        except IntegrityError:
            raise ApplicationError(
                f"Another edit or recall of “{campaign}” is in progress; wait until it completes.",
                code="invalid_state",
                status=409,
            ) from None
        with connection.cursor() as cursor:
            cursor.execute(WRITE_ROWS, {"change": change.pk, **_campaign_rows(campaign.pk)})
            total = cursor.rowcount
        if not total and not follow_ups_reach:
            raise ApplicationError(
                f"Nobody has the message of “{campaign}” any more (it reached nobody, or it was recalled): "
                "there is nothing to change.",
                code="invalid_state",
                status=409,
            )
        change.total = total
        change.save(update_fields=["total"])
        if action == MessageChange.Action.EDIT:
            # A new version of the message: a policy's people acknowledge it again.
            cleared = (acknowledgements_clear(campaign_id=campaign.pk)
                       if campaign.acknowledgement == Campaign.Acknowledgement.POLICY else 0)
            if campaign.acknowledgement == Campaign.Acknowledgement.POLICY:  # their cards ask again too
                for follow_up in campaign.follow_ups.values_list("pk", flat=True):
                    acknowledgements_clear(campaign_id=follow_up)
            campaign.message_version += 1
            Campaign.objects.filter(pk=campaign.pk).update(message_version=campaign.message_version)
            audit_record(
                AuditEntry.Action.EDIT_SENT,
                summary=f"Edited the message of “{campaign}” for {total} people"
                        + (f": version {campaign.message_version}, which {cleared} people had acknowledged before "
                           "are to acknowledge again" if campaign.acknowledgement == Campaign.Acknowledgement.POLICY
                           else ""),
                user=user,
                campaign=campaign,
                detail={"change_id": change.pk, "people": total, "kind": kind, "version": campaign.message_version,
                        "acknowledgements_cleared": cleared},
            )
        else:
            notices_drop(campaign_id=campaign.pk)  # nothing pops up for a message taken back
            # A follow-up not launched yet never goes: nothing of a recalled campaign is sent after it.
            campaign.follow_ups.filter(status=Campaign.Status.DRAFT).update(
                status=Campaign.Status.CANCELLED, cancelled_at=timezone.now(),
                status_reason="Cancelled: the campaign it follows was recalled.")
            audit_record(
                AuditEntry.Action.RECALL,
                summary=f"Recalled the message of “{campaign}” from {total} people",
                user=user,
                campaign=campaign,
                detail={"change_id": change.pk, "people": total},
            )
        # Robust: should Redis be away, the periodic pass starts the chains it finds missing.
        transaction.on_commit(lambda: chains_start(change_id=change.pk, total=total), robust=True)
        _follow_ups_change(campaign, follow_ups_reach, action=action, user=user, fields=fields)
    return change


def _follow_ups_reach(campaign: Campaign, action: str) -> dict[int, int]:
    """The follow-ups a change of the campaign reaches (``_follow_ups_change``), each with how many people have its
    message now; those nobody has are left out."""
    follow_ups = campaign.follow_ups.order_by("pk")
    if action == MessageChange.Action.EDIT:
        follow_ups = follow_ups.filter(follow_up_resends=True)
    reach = {pk: message_reach(campaign_id=pk) for pk in follow_ups.values_list("pk", flat=True)}
    return {pk: people for pk, people in reach.items() if people}


def _follow_ups_change(campaign: Campaign, reach: dict[int, int], *, action: str, user: Any,
                       fields: dict[str, Any]) -> None:
    """A campaign's change reaches its follow-ups' messages (``delivery.follow_ups``): a recall takes back every one;
    an edit changes those that sent its message again, not a reminder's own words (``reach``: those that someone has
    the message of). In the campaign's change's transaction; each is a change of its own, with its own rows and
    chains."""
    for follow_up in Campaign.objects.filter(pk__in=reach).order_by("pk"):
        try:
            with transaction.atomic():
                change = MessageChange.objects.create(campaign=follow_up, action=action, requested_by=user, **fields)
        except IntegrityError:
            raise ApplicationError(
                f"An edit or recall of “{follow_up}”, which follows up “{campaign}”, is in progress; wait until it "
                "completes.", code="invalid_state", status=409) from None
        with connection.cursor() as cursor:
            cursor.execute(WRITE_ROWS, {"change": change.pk, **_campaign_rows(follow_up.pk)})
            change.total = total = cursor.rowcount
        change.save(update_fields=["total"])
        if action == MessageChange.Action.EDIT:  # its links' version (what its card asks is the campaign's version)
            Campaign.objects.filter(pk=follow_up.pk).update(message_version=F("message_version") + 1)
        audit_record(
            AuditEntry.Action.EDIT_SENT if action == MessageChange.Action.EDIT else AuditEntry.Action.RECALL,
            summary=f"{'Edited' if action == MessageChange.Action.EDIT else 'Recalled'} the message of “{follow_up}” "
                    f"for {total} people, with that of “{campaign}”, which it follows up",
            user=user, campaign=follow_up, detail={"change_id": change.pk, "people": total})
        transaction.on_commit(lambda change_id=change.pk, rows=total: chains_start(change_id=change_id, total=rows),
                              robust=True)


# --- the chains of chunk tasks -------------------------------------------------------------------
#
# Each change has a generation in Redis, kept alive (its time to live renewed) by its chunk tasks. A
# task of an older generation stops; the periodic pass starts a new generation when the key has
# expired while rows remain (the chains' messages were lost with a worker or with Redis).


def _client() -> redis.Redis:
    return redis_for(settings.REDIS_URL)


def chains_key(change_id: int) -> str:
    return f"crier:change:{change_id}:chains"


def _alive_for(extra: float = 0.0) -> int:
    return math.ceil(max(60, 2 * settings.RETRY_GRACE_SECONDS) + extra)


def chains_start(*, change_id: int, total: int | None = None) -> int:
    """Starts (or restarts) the change's chains of chunk tasks, no more than ``total`` rows need;
    returns their generation."""
    client = _client()
    generation = int(client.incr(chains_key(change_id)))
    client.expire(chains_key(change_id), _alive_for())
    chains = concurrency() if total is None else max(1, min(concurrency(), math.ceil(total / BATCH)))
    for _ in range(chains):
        jobs.message_change_chunk(change_id, generation)
    return generation


def _chain_current(change_id: int, generation: int) -> bool:
    try:
        current = _client().get(chains_key(change_id))
    except redis.RedisError:
        return True  # the rows' claims keep duplicates harmless
    return current is not None and int(current) == generation


def _chain_alive(change_id: int, extra: float = 0.0) -> None:
    """Renews the chains' key; only ever lengthens it (another chain may be waiting longer)."""
    try:
        _client().expire(chains_key(change_id), _alive_for(extra), gt=True)
    except redis.RedisError:
        pass


def message_change_chunk(*, change_id: int, generation: int) -> int:
    """One task of a chain: processes rows for a while, then queues the chain's next task, or
    completes the change when no row is left."""
    if not _chain_current(change_id, generation):
        return 0
    result = message_change_process(change_id=change_id, on_row=lambda: _chain_alive(change_id))
    if result.next_in is None:
        message_change_complete(change_id=change_id)
    else:
        _chain_alive(change_id, result.next_in)
        jobs.message_change_chunk(change_id, generation, countdown=result.next_in)
    return result.processed


# --- completion, the periodic pass and progress --------------------------------------------------


def message_change_complete(*, change_id: int) -> bool:
    """Marks the change completed once none of its rows is pending or being worked on; its counts
    are then recounted from the rows, and the commonest failures summarised."""
    with transaction.atomic():
        running = MessageChange.objects.select_for_update().filter(status=MessageChange.Status.RUNNING)
        change = running.filter(pk=change_id).first()
        if change is None or change.rows.filter(status__in=(Row.PENDING, Row.WORKING)).exists():
            return False
        counts = dict(change.rows.values_list("status").annotate(n=Count("id")).order_by())
        reasons = (
            change.rows.filter(status=Row.FAILED)
            .values_list("error_code")
            .annotate(n=Count("id"))
            .order_by("-n", "error_code")[:5]
        )
        change.done = counts.get(Row.DONE, 0)
        change.failed = counts.get(Row.FAILED, 0)
        change.error_summary = ", ".join(f"{n} × {code or 'unknown'}" for code, n in reasons)[:500]
        change.status = MessageChange.Status.COMPLETED
        change.completed_at = timezone.now()
        change.save(update_fields=["done", "failed", "error_summary", "status", "completed_at"])
    try:
        _client().delete(chains_key(change_id))
    except redis.RedisError:
        pass
    return True


def message_changes_reconcile() -> dict[str, int]:
    """The periodic pass: rows whose worker died are taken back after the lease (editing and deleting
    are idempotent, so trying again is safe); changes with nothing left are completed; changes whose
    chains were lost (their generation key expired) are started again."""
    taken_back = rows_take_back_expired()
    completed = restarted = 0
    running = MessageChange.objects.filter(status=MessageChange.Status.RUNNING)
    for change_id, total, done, failed in running.values_list("id", "total", "done", "failed"):
        if message_change_complete(change_id=change_id):
            completed += 1
        elif not _client().exists(chains_key(change_id)):
            logger.warning("message change %s had no live chain of tasks; starting them again", change_id)
            chains_start(change_id=change_id, total=total - done - failed)
            restarted += 1
    return {"taken_back": taken_back, "completed": completed, "restarted": restarted}


def message_change_progress(*, change_id: int) -> dict[str, Any]:
    """Where a change stands, from its row alone: counts, what remains, the pace so far and the
    estimated time left."""
    change = MessageChange.objects.get(pk=change_id)
    finished = change.done + change.failed
    remaining = max(0, change.total - finished)
    end = change.completed_at or timezone.now()
    elapsed = max(1.0, (end - change.created_at).total_seconds())
    rate = finished / elapsed
    return {
        "id": change.pk,
        "campaign_id": change.campaign_id,
        "action": change.action,
        "status": change.status,
        "total": change.total,
        "done": change.done,
        "failed": change.failed,
        "remaining": remaining,
        "rate_per_second": round(rate, 1),
        "eta_seconds": (round(remaining / rate) if rate > 0 else None) if remaining else 0,
        "error_summary": change.error_summary,
        "created_at": change.created_at,
        "completed_at": change.completed_at,
    }
