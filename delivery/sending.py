"""Delivering one campaign message to one person: claim, check, address, render, send, record.

The hot path of the engine: three statements against PostgreSQL per person (claim, read the
context, record the outcome), each a single round trip.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from bots.addresses import ADDRESS_COLUMNS, REMEMBER_CONVERSATION, address_join, address_mark_blocked, address_of
from bots.transport import TeamsTransport
from campaigns.models import OptOut, Recipient
from campaigns.card_actions import Ask, ask_of, content_asking, poll_of
from campaigns.rendering import PLACEHOLDER_FIELDS, CompiledMessage, compile_message
from campaigns.selectors import opted_out_sql
from campaigns.services import opt_out_record
from core.channels import Address, Channel, Deferred, Stopped, TransportError

from . import progress, webhooks
from .clicks import activity_tracked
from .installing import NEVER_INSTALL_FOR, installer_wake
from .notifying import notifier_wake
from .models import Delivery
from .retry import retry_in

logger = logging.getLogger(__name__)
_transport = TeamsTransport()
Status = Delivery.Status
# Teams' answers that a person has not installed the app (a campaign may have Crier install it for them).
NOT_INSTALLED = frozenset({"ForbiddenOperationException", "BotNotInConversationRoster"})
# The error code of a delivery whose send raised (a bug or bad data rather than an answer from Teams).
CRIER_ERROR = "crier_error"

# Claims the row only while its campaign runs: a paused or cancelled campaign's queued tasks claim nothing. What a
# follow-up's card asks is of the version of the campaign it follows (delivery.follow_ups); its links are of its own
# message's version.
CLAIM = """
UPDATE delivery_delivery AS d
   SET status = 'sending', attempts = d.attempts + 1, claimed_at = now()
  FROM campaigns_campaign AS c LEFT JOIN campaigns_campaign AS followed ON followed.id = c.follows_id
 WHERE d.id = %s AND d.status IN ('pending', 'retrying') AND c.id = d.campaign_id AND c.status = 'running'
RETURNING d.campaign_id, d.recipient_id, d.attempts, c.template_id, c.category_id, c.install_app, d.install,
          c.urgent AND c.kind = 'announcement', c.acknowledgement, c.public_id,
          COALESCE(followed.message_version, c.message_version),
          c.poll_question, c.poll_options, c.poll_multiple, c.poll_closes_at, c.track_clicks,
          CASE WHEN c.follows_id IS NOT NULL THEN c.message_version END
"""

_RECIPIENT_COLUMNS = ("is_active", "aad_object_id", "tenant_id", "attributes", *[
    f for f in PLACEHOLDER_FIELDS if f not in ("tenant_id",)
])
CONTEXT = f"""
SELECT {", ".join(f"r.{column}" for column in _RECIPIENT_COLUMNS)},
       {ADDRESS_COLUMNS},
       a.state,
       t.updated_at,
       {opted_out_sql(recipient="r.id", mandatory="cat.mandatory", category="cat.id")}
  FROM campaigns_recipient AS r
  JOIN campaigns_messagetemplate AS t ON t.id = %s
  JOIN campaigns_category AS cat ON cat.id = %s
  {address_join('r')}
 WHERE r.id = %s
"""


@dataclass(frozen=True)
class Outcome:
    status: str  # a Delivery.Status, or "not_claimed" when another worker has (or had) it
    retry_in: float | None = None


NOT_CLAIMED = Outcome("not_claimed")


@lru_cache(maxsize=64)
def _compiled(template_id: int, updated_at: str, ask: Ask | None = None) -> CompiledMessage:
    """The template compiled, with the campaign's request for an acknowledgement when it makes one."""
    from campaigns.models import MessageTemplate

    template = MessageTemplate.objects.get(pk=template_id)
    kind, text, card = content_asking(kind=template.kind, text=template.text, card=template.card, ask=ask)
    return compile_message(kind=kind, text=text, card=card, wrap=_transport.wrap)


def _write(sql: str, params: list[Any]) -> int:
    """A write that survives a PostgreSQL restart: the outcome of a call Teams already answered
    must not be lost, or the person would be sent the message again."""
    deadline = time.monotonic() + settings.DELIVERY_DB_RETRY_SECONDS
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.rowcount
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            logger.warning("database unavailable while recording a delivery; retrying")
            connection.close()
            time.sleep(1.0)


# Every outcome write names the claim it belongs to (the row is still sending, at this attempt), so a
# worker that outlived its lease cannot overwrite the claim the reconciler handed to another.
CLAIMED = "id = %s AND status = 'sending' AND attempts = %s"


def _finish(claim: tuple[int, int], campaign_id: int, status: str, *, events: bool = True, **fields: Any) -> Outcome:
    """Records the end state (and, when ``events`` and someone subscribes, its webhook event, in the
    same statement)."""
    fields["finished_at"] = timezone.now()
    assignments = ", ".join(f"{name} = %s" for name in fields)
    update = f"UPDATE delivery_delivery SET status = %s, {assignments} WHERE {CLAIMED}"
    wanted = webhooks.wanted_types() if events else frozenset()
    if f"delivery.{status}" in wanted:
        # The outcome and its webhook event, in one statement.
        sql = f"WITH done AS ({update} {webhooks.DELIVERY_RETURNING}) {webhooks.delivery_events_sql(returning='done')}"
        written = _write(sql, [status, *fields.values(), *claim, list(wanted)])
    else:
        written = _write(update, [status, *fields.values(), *claim])
    if written:  # not when the claim was no longer this worker's
        progress.record(campaign_id, **{status: 1})
    return Outcome(status)


def delivery_send(*, delivery_id: int, transport: Channel | None = None) -> Outcome:
    """Sends one delivery if this call wins the claim on it. The row is the truth: a duplicate
    task, or one for a delivery already finished or whose campaign is not running, sends nothing."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()  # reconnect after a database restart
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, [delivery_id])
        claimed = cursor.fetchone()
        if claimed is None:
            return NOT_CLAIMED
        (campaign_id, recipient_id, attempts, template_id, category_id, install_app, install, urgent,
         acknowledgement, public_id, version, question, options, multiple, closes_at, track_clicks,
         links_version) = claimed
    poll = poll_of(question=question, options=json.loads(options) if isinstance(options, str) else options,
                   multiple=multiple, closes_at=closes_at)
    if poll is not None:  # a poll that has closed (a welcome's, months on) is sent closed, with no button
        poll = poll.as_sent(timezone.now())
    claim = (delivery_id, attempts)
    try:
        with connection.cursor() as cursor:
            cursor.execute(CONTEXT, [template_id, category_id, recipient_id])
            row = cursor.fetchone()
        return _send_claimed(claim, campaign_id, template_id, recipient_id, row, transport or _transport,
                             install=Install(allowed=install_app, done=install), urgent=urgent,
                             ask=ask_of(public_id=public_id, version=version, mode=acknowledgement, poll=poll),
                             track_clicks=track_clicks, links_version=links_version)
    except (OperationalError, InterfaceError):
        raise  # the database is away: after the lease, the reconciler takes the row back
    except _Accepted as accepted:
        return _record_accepted_despite(claim, campaign_id, accepted)
    except _CallCrashed as crashed:
        return _record_crash(claim, campaign_id, crashed.__cause__, ambiguous=True)
    except Exception as error:  # a bug or bad data: the row must still reach an end state
        return _record_crash(claim, campaign_id, error, ambiguous=False)


class _CallCrashed(Exception):
    """The call to Teams raised something that is not one of its answers: Teams may have the message."""


class _Accepted(Exception):
    """Teams accepted the message, then recording that raised: the person must not get it again."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields["activity_id"])
        self.fields = fields


@dataclass(frozen=True)
class Install:
    allowed: bool  # the campaign lets Crier install the app for people who lack it
    done: str  # what an install for this delivery came to: a Delivery.Install, or "" before any


NO_INSTALL = Install(allowed=False, done="")


def _send_claimed(
    claim: tuple[int, int], campaign_id: int, template_id: int, recipient_id: int, row: Any, transport: Channel,
    install: Install = NO_INSTALL, urgent: bool = False, ask: Ask | None = None, track_clicks: bool = False,
    links_version: int | None = None,
) -> Outcome:
    if row is None:  # the person was deleted while the campaign's rows were being written
        return _finish(claim, campaign_id, Status.SKIPPED, skip_reason=Delivery.SkipReason.INACTIVE)
    person = SimpleNamespace(id=recipient_id, **dict(zip(_RECIPIENT_COLUMNS, row[: len(_RECIPIENT_COLUMNS)], strict=True)))
    if isinstance(person.attributes, str):  # jsonb read by raw SQL arrives as text
        person.attributes = json.loads(person.attributes)
    *stored, address_state, template_updated, opted_out = row[len(_RECIPIENT_COLUMNS):]

    if not person.is_active:
        return _finish(claim, campaign_id, Status.SKIPPED, skip_reason=Delivery.SkipReason.INACTIVE)
    if opted_out:
        return _finish(claim, campaign_id, Status.SKIPPED, skip_reason=Delivery.SkipReason.OPTED_OUT)
    if person.aad_object_id is None:
        return _finish(claim, campaign_id, Status.SKIPPED, skip_reason=Delivery.SkipReason.NO_TEAMS_IDENTITY)
    address = address_of(aad_object_id=person.aad_object_id, tenant_id=person.tenant_id, stored=tuple(stored))
    if not address.tenant_id:
        return _finish(
            claim,
            campaign_id,
            Status.FAILED,
            error_code="NoTenant",
            error_message="No tenant id for this person: set the recipient's tenant_id or BOT_TENANT_ID.",
        )
    if install.allowed and not install.done and _known_without_app(address_state, stored):
        return _hand_to_installer(claim)  # asking Teams first would spend a call of its pace to hear "not installed"
    body = _compiled(template_id, template_updated.isoformat(), ask).render(person)
    if track_clicks:  # its link buttons lead through Crier, signed for this delivery
        version = links_version or (ask.version if ask else 1)
        body = activity_tracked(body, delivery_id=claim[0], version=version)
    try:
        result = transport.send(address=address, activity_json=body, campaign_id=campaign_id)
    except Stopped as stopped:
        return _stopped(claim, campaign_id, stopped.reason)
    except Deferred as deferred:
        return _deferred(claim, deferred.wait)
    except TransportError as error:
        if error.code in NOT_INSTALLED:
            if install.done:
                error = _still_not_installed(error)
            elif install.allowed and address_state not in NEVER_INSTALL_FOR:
                return _hand_to_installer(claim)
        return _record_failure(claim, campaign_id, person, address, error)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        raise _CallCrashed() from error
    fields = {"activity_id": result.activity_id, "conversation_id": result.conversation_id, "last_status_code": 201,
              "error_code": "", "error_message": "", **({"notice": "due"} if urgent else {})}
    try:
        if result.conversation_id != address.conversation_id:
            _remember_conversation(person.aad_object_id, address, result.conversation_id)
        return _sent(claim, campaign_id, fields)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        raise _Accepted(fields) from error


def _sent(claim: tuple[int, int], campaign_id: int, fields: dict[str, Any], *, events: bool = True) -> Outcome:
    """Records the message sent; an urgent campaign's row has its notice due, and a notifier is woken for it."""
    outcome = _finish(claim, campaign_id, Status.SENT, events=events, **fields)
    if "notice" in fields:
        notifier_wake()
    return outcome


def _known_without_app(address_state: str | None, stored: list[Any]) -> bool:
    """Teams never told Crier of the person (the app's installation would have): no address, or one with neither
    a chat nor a Teams id (a team's roster gives one, through which the bot reaches them without the app)."""
    user_id, _, _, conversation_id = stored
    return address_state is None or (address_state == "unknown" and not user_id and not conversation_id)


def _hand_to_installer(claim: tuple[int, int]) -> Outcome:
    """The person has not installed the app and the campaign lets Crier install it: the row waits for the installer
    (``delivery.installing``), outside this claim, and comes back to be sent once the app is there. This attempt
    does not count: Teams' answer was about the app, not about the message."""
    if _write(f"UPDATE delivery_delivery SET status = 'installing', attempts = attempts - 1, claimed_at = NULL,"
              f" next_attempt_at = NULL WHERE {CLAIMED}", [*claim]):
        installer_wake()
    return Outcome(Status.INSTALLING)


def _still_not_installed(error: TransportError) -> TransportError:
    """After Crier installed the app (or found it there), Teams may take a moment to know: tried again, like a
    busy Teams, until the delivery's attempts are spent."""
    return TransportError(
        status=error.status, code=error.code, permanent=False, personal=True,
        message=f"Microsoft Graph installed the app, but Teams still answers that it is not installed: {error.message}",
    )


def _crash_reason(error: BaseException | None) -> str:
    """The exception's class and the start of its text: enough to find the bug, shown on the watch page."""
    if error is None:
        return "Unknown error"
    text = str(error).splitlines()[0][:300] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _record_crash(claim: tuple[int, int], campaign_id: int, error: BaseException | None, *, ambiguous: bool) -> Outcome:
    """A send that raised (a bug, bad data) records code ``crier_error`` and the exception's class.
    Raised before the call to Teams, it is retried like a transient error until it has used
    ``DELIVERY_MAX_ATTEMPTS``; raised inside the call (``ambiguous``: Teams may have the message),
    it fails at once rather than risk sending the message again. Either way its campaign completes,
    and a campaign where every send raises pauses itself like one whose sends Teams refuses."""
    delivery_id, attempts = claim
    logger.error("delivery %s raised while sending (attempt %s)", delivery_id, attempts, exc_info=error)
    if ambiguous and _write(f"UPDATE delivery_delivery SET ambiguous = true WHERE {CLAIMED} AND NOT ambiguous", [*claim]):
        progress.record(campaign_id, ambiguous=1)
    crash = TransportError(status=None, code=CRIER_ERROR, message=_crash_reason(error), permanent=ambiguous)
    return _fail_or_retry(claim, campaign_id, crash)


def _record_accepted_despite(claim: tuple[int, int], campaign_id: int, accepted: _Accepted) -> Outcome:
    """Teams has the message: record it sent, with its webhook event, or at least in the plainest
    way, so that it is never sent again."""
    logger.error("delivery %s was accepted by Teams but recording it raised", claim[0], exc_info=accepted.__cause__)
    try:
        return _sent(claim, campaign_id, accepted.fields)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        logger.exception("delivery %s: recording it sent with its webhook event raised too", claim[0])
    return _sent(claim, campaign_id, accepted.fields, events=False)


def _stopped(claim: tuple[int, int], campaign_id: int, reason: str) -> Outcome:
    if reason == "cancelled":
        return _finish(claim, campaign_id, Status.SKIPPED, skip_reason=Delivery.SkipReason.CAMPAIGN_CANCELLED)
    # Paused: hand the row back untouched (this attempt does not count); resuming feeds it again.
    _write(f"UPDATE delivery_delivery SET status = 'pending', attempts = attempts - 1 WHERE {CLAIMED}", [*claim])
    return Outcome(Status.PENDING)


def _deferred(claim: tuple[int, int], wait: float) -> Outcome:
    """Teams was not called (its limits, or a Retry-After, say wait): try again then, and this
    attempt does not count."""
    _write(
        f"UPDATE delivery_delivery SET status = 'retrying', attempts = attempts - 1, next_attempt_at = %s WHERE {CLAIMED}",
        [timezone.now() + timedelta(seconds=wait), *claim],
    )
    return Outcome(Status.RETRYING, retry_in=wait)


def _remember_conversation(aad_object_id: Any, address: Address, conversation_id: str) -> None:
    """Stores the conversation Teams made for this person (one statement: this is the hot path)."""
    _write(REMEMBER_CONVERSATION, [aad_object_id, address.tenant_id, conversation_id, address.service_url])


def _record_failure(
    claim: tuple[int, int], campaign_id: int, person: Any, address: Address, error: TransportError
) -> Outcome:
    if error.conversation_id and error.conversation_id != address.conversation_id:
        _remember_conversation(person.aad_object_id, address, error.conversation_id)
    if error.opt_out:
        recipient = Recipient.objects.get(pk=person.id)
        opt_out_record(recipient=recipient, source=OptOut.Source.BLOCKED, note=f"Teams answered {error.code}")
        address_mark_blocked(aad_object_id=person.aad_object_id)
    return _fail_or_retry(claim, campaign_id, error)


def _fail_or_retry(claim: tuple[int, int], campaign_id: int, error: TransportError) -> Outcome:
    """The retry policy applied to one failed attempt: a permanent error, or the last attempt, ends
    the delivery failed (and counts toward pausing its campaign); anything else is tried again."""
    delivery_id, attempts = claim
    fields = {
        "error_code": error.code[:100],
        "error_message": error.message[:1000],
        "last_status_code": error.status,
    }
    delay = retry_in(attempt=attempts, error=error)
    if delay is None:
        logger.info("delivery %s failed: %s %s", delivery_id, error.status, error.code)
        outcome = _finish(claim, campaign_id, Status.FAILED, **fields)
        from .control import campaign_watch_errors

        campaign_watch_errors(campaign_id=campaign_id, error=error)
        return outcome
    _write(
        "UPDATE delivery_delivery SET status = 'retrying', next_attempt_at = %s, error_code = %s, error_message = %s,"
        f" last_status_code = %s WHERE {CLAIMED}",
        [timezone.now() + timedelta(seconds=delay), *fields.values(), *claim],
    )
    return Outcome(Status.RETRYING, retry_in=delay)
