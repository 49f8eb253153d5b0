"""Editing or deleting one person's copy of a sent message: the worker side of ``delivery.message_changes``.

Like a send (``delivery.sending``): rows are claimed with one conditional ``UPDATE`` (``SKIP LOCKED``,
so chains of tasks never take the same row) that also reads what the call needs; each call waits
for its slot from the shared pacer; the outcome and the change's counts are written in one
statement, fenced by the claim, so a worker that outlived its lease cannot overwrite a later claim
and a re-run never calls Teams for a row that is done. Editing and deleting are idempotent, so a
row whose worker died is simply tried again after the lease.

What each Teams answer leads to: 2xx is done; 404 means the message is no longer there (the person
deleted the chat, or it was deleted): done for a recall, failed ``MessageGone`` for an edit; what
``bots.transport.classify`` calls retryable (412, 429, 502-504, no answer) waits for the retry
policy's delay (never less than a ``Retry-After``) and is tried again, up to
``DELIVERY_MAX_ATTEMPTS``; anything else fails with Teams' code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bots.addresses import ADDRESS_COLUMNS, address_join, address_of
from bots.transport import TeamsTransport
from campaigns.card_actions import campaign_ask, content_asking
from campaigns.rendering import PLACEHOLDER_FIELDS, CompiledMessage, compile_message
from core.channels import Address, Channel, Deferred, TransportError

from .clicks import activity_tracked
from .models import DeliveryChange, MessageChange
from .retry import retry_in

logger = logging.getLogger(__name__)

Row = DeliveryChange.Status
# Rows a chunk task claims at a time, and how long it keeps taking rows before handing over to the
# next task of its chain (so workers stay free for the other queues' work).
BATCH = 20
CHUNK_SECONDS = 10.0


# --- the transport: the same pacing and answer classification as sends ---------------------------


_transport = TeamsTransport()


# --- processing rows -----------------------------------------------------------------------------

_PERSON = ("aad_object_id", "tenant_id", "attributes", *[f for f in PLACEHOLDER_FIELDS if f != "tenant_id"])
# Claims due rows (a chain never waits for another's) and reads what calling Teams needs, in one statement.
CLAIM = f"""
WITH claimed AS (
    UPDATE delivery_deliverychange AS r
       SET status = 'working', attempts = r.attempts + 1, claimed_at = now()
     WHERE r.id IN (
           SELECT id FROM delivery_deliverychange
            WHERE change_id = %s AND status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.delivery_id, r.attempts
)
SELECT claimed.id, claimed.attempts, d.id, d.activity_id, d.conversation_id, {ADDRESS_COLUMNS},
       {", ".join(f"p.{column}" for column in _PERSON)}
  FROM claimed
  JOIN delivery_delivery AS d ON d.id = claimed.delivery_id
  JOIN campaigns_recipient AS p ON p.id = d.recipient_id
  {address_join('p')}
 ORDER BY claimed.id
"""
# Every outcome write names the claim it belongs to, so a worker that outlived its lease cannot
# overwrite a later claim of the same row.
CLAIMED = "id = %s AND status = 'working' AND attempts = %s"
# The row's outcome and the change's counts, in one statement.
FINISH = f"""
WITH finished AS (
    UPDATE delivery_deliverychange
       SET status = %s, error_code = %s, error_message = %s, last_status_code = %s, finished_at = now()
     WHERE {CLAIMED}
    RETURNING change_id, status
)
UPDATE delivery_messagechange AS m
   SET done = m.done + (finished.status = 'done')::int, failed = m.failed + (finished.status = 'failed')::int
  FROM finished WHERE m.id = finished.change_id
"""


@dataclass(frozen=True)
class Claim:
    row_id: int
    attempts: int
    activity_id: str
    address: Address
    person: Any
    delivery_id: int = 0


@dataclass(frozen=True)
class ChunkResult:
    processed: int
    next_in: float | None  # seconds until rows are due again; None when no row is left to do


def message_change_process(
    *,
    change_id: int,
    budget_seconds: float = CHUNK_SECONDS,
    transport: Channel | None = None,
    on_row: Callable[[], None] | None = None,
) -> ChunkResult:
    """Claims and processes the change's due rows for about ``budget_seconds`` (at least one row)."""
    change = MessageChange.objects.filter(pk=change_id, status=MessageChange.Status.RUNNING).select_related(
        "campaign").first()
    if change is None:
        return ChunkResult(0, None)
    transport = transport or _transport
    compiled = None
    if change.is_edit:  # the new words, with the campaign's request for an acknowledgement of this version
        ask = campaign_ask(change.campaign, sent_at=timezone.now())
        kind, text, card = content_asking(kind=change.kind, text=change.text, card=change.card, ask=ask)
        compiled = compile_message(kind=kind, text=text, card=card, wrap=transport.wrap)
    deadline = time.monotonic() + budget_seconds
    processed = 0
    while claims := _claim(change_id):
        for position, claim in enumerate(claims):
            if position and time.monotonic() >= deadline:  # at least one row per chunk, whatever the budget
                _hand_back(claims[position:])
                break
            _apply(change, claim, compiled, transport)
            processed += 1
            if on_row is not None:
                on_row()
        if time.monotonic() >= deadline:
            break
    return ChunkResult(processed, _next_due(change_id))


def _claim(change_id: int) -> list[Claim]:
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, [change_id, BATCH])
        rows = cursor.fetchall()
    claims = []
    for row_id, attempts, delivery_id, activity_id, conversation_id, *row in rows:
        stored, person = row[:4], SimpleNamespace(**dict(zip(_PERSON, row[4:], strict=True)))
        # The message's own conversation, whatever the address says now.
        address = replace(
            address_of(aad_object_id=person.aad_object_id, tenant_id=person.tenant_id, stored=tuple(stored)),
            conversation_id=conversation_id,
        )
        claims.append(Claim(row_id, attempts, activity_id, address, person, delivery_id))
    return claims


def _apply(change: MessageChange, claim: Claim, compiled: CompiledMessage | None, transport: Channel) -> str:
    try:
        if compiled is not None:
            body = compiled.render(claim.person)
            if change.campaign.track_clicks:
                body = activity_tracked(body, delivery_id=claim.delivery_id, version=change.campaign.message_version)
            activity = json.loads(body)
            activity["id"] = claim.activity_id  # the replacement names the activity it replaces
            body = json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode()
            transport.update(address=claim.address, activity_id=claim.activity_id, activity_json=body)
        else:
            transport.delete(address=claim.address, activity_id=claim.activity_id)
    except Deferred as deferred:
        # Teams was not called (the conversation's own limits, or a long Retry-After): not an attempt.
        _execute(
            f"UPDATE delivery_deliverychange SET status = 'pending', attempts = attempts - 1, next_attempt_at = %s"
            f" WHERE {CLAIMED}",
            [timezone.now() + timedelta(seconds=deferred.wait), claim.row_id, claim.attempts],
        )
        return Row.PENDING
    except TransportError as error:
        return _failure(change, claim, error)
    _finish(claim, Row.DONE)
    return Row.DONE


def _failure(change: MessageChange, claim: Claim, error: TransportError) -> str:
    if error.status == 404:
        if not change.is_edit:
            # Already gone (the person deleted the chat, or it was deleted before): what a recall wants.
            _finish(claim, Row.DONE, status_code=404, message=f"Already gone: Teams answered 404 {error.code}.")
            return Row.DONE
        _finish(
            claim,
            Row.FAILED,
            code="MessageGone",
            status_code=404,
            message=f"The message is no longer in the chat (Teams answered 404 {error.code}): nothing to edit.",
        )
        return Row.FAILED
    delay = retry_in(attempt=claim.attempts, error=error)
    if delay is None:
        logger.info("message change %s row %s failed: %s %s", change.pk, claim.row_id, error.status, error.code)
        _finish(claim, Row.FAILED, code=error.code, status_code=error.status, message=error.message)
        return Row.FAILED
    _execute(
        "UPDATE delivery_deliverychange SET status = 'pending', next_attempt_at = %s, error_code = %s,"
        f" error_message = %s, last_status_code = %s WHERE {CLAIMED}",
        [
            timezone.now() + timedelta(seconds=delay),
            error.code[:100],
            error.message[:1000],
            error.status,
            claim.row_id,
            claim.attempts,
        ],
    )
    return Row.PENDING


def _finish(claim: Claim, status: str, *, code: str = "", status_code: int | None = 200, message: str = "") -> None:
    _execute(FINISH, [status, code[:100], message[:1000], status_code, claim.row_id, claim.attempts])


def _hand_back(claims: list[Claim]) -> None:
    """Rows claimed but not reached before the chunk's time was up: untouched, the attempt not counted."""
    for claim in claims:
        _execute(
            f"UPDATE delivery_deliverychange SET status = 'pending', attempts = attempts - 1 WHERE {CLAIMED}",
            [claim.row_id, claim.attempts],
        )


def _execute(sql: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _next_due(change_id: int) -> float | None:
    """Seconds until the change's next pending row is due (0: now), or None when none is pending."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM min(COALESCE(next_attempt_at, now())) - now())"
            " FROM delivery_deliverychange WHERE change_id = %s AND status = 'pending'",
            [change_id],
        )
        seconds = cursor.fetchone()[0]
    return None if seconds is None else max(0.0, float(seconds))


# Rows claimed longer ago than the lease: their worker died. Pending again, due now; failed once they
# have used every attempt (a row that stops its worker each time must not come back for ever).
TAKE_BACK_EXPIRED = """
WITH expired AS (
    UPDATE delivery_deliverychange
       SET status = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'pending' END,
           next_attempt_at = now(),
           error_code = CASE WHEN attempts >= %(max)s THEN 'WorkerLost' ELSE error_code END,
           error_message = CASE WHEN attempts >= %(max)s
                                THEN 'The worker stopped while calling Teams, at every attempt.' ELSE error_message END,
           finished_at = CASE WHEN attempts >= %(max)s THEN now() END
     WHERE status = 'working' AND claimed_at < %(lease)s
    RETURNING change_id, status
), counted AS (
    UPDATE delivery_messagechange AS m SET failed = m.failed + lost.n
      FROM (SELECT change_id, count(*) AS n FROM expired WHERE status = 'failed' GROUP BY change_id) AS lost
     WHERE m.id = lost.change_id
)
SELECT count(*) FROM expired
"""


def rows_take_back_expired() -> int:
    """Takes back the rows whose worker died; returns how many."""
    lease = timezone.now() - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(TAKE_BACK_EXPIRED, {"max": settings.DELIVERY_MAX_ATTEMPTS, "lease": lease})
        return cursor.fetchone()[0]
