"""Urgent notices: once an urgent campaign's message is sent to a person, its pop-up in their Teams activity feed
(``Campaign.urgent``; ``bots.notices`` makes the call to Microsoft Graph).

The send marks the row's notice ``due`` in the statement that records it sent (``delivery.sending``), and wakes
the notifier. The notifier:

* is one task at a time across every worker (an advisory lock), so Graph's low pace for the activity feed is its
  own. It works for ``RUN_SECONDS``, then hands on to the next task;
* takes the due rows of one campaign at a time, up to ``bots.notices.MOST_RECIPIENTS`` (one call to Graph),
  claiming them (notice ``sending``, ``claimed_at``). Rows claimed longer than ``LEASE_SECONDS`` ago belong to a
  notifier that died and are taken again: the person may then be notified twice, never not at all;
* takes rows of running and completed campaigns only: a paused campaign's notices wait for its resume, a cancel
  or a recall drops those not sent (``notices_drop``);
* gives up on a notice whose message was sent more than ``STALE_SECONDS`` ago (after a long pause, or while
  Graph was away): a pop-up that late is noise, and the message is in the chat;
* records what came of each call on its rows: ``notified``; ``unanswered`` when Graph's answer was lost (a
  timeout): the notification may have popped up, so it is never sent again; ``failed`` when Graph refuses for want
  of set-up (a permission, credentials, an app package without the activity type, tokens too short-lived), with an
  audit entry on the campaign saying what to do. Graph unavailable (429, 500, 503, unreachable): the rows wait and
  the notifier tries again after a pause, up to the stale limit.

It is woken by a send (at most once every ``WAKE_SECONDS``), by a resume, and by the reconciler whenever notices
wait and no notifier runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.db import connection

from bots.notices import MOST_RECIPIENTS, UNANSWERED, NoticeRefused, Notifier
from campaigns.audit import audit_record
from campaigns.models import AuditEntry, Campaign

from . import jobs, progress
from .models import PERSON_BITS, campaign_ids
from .one_at_a_time import OneAtATime

logger = logging.getLogger(__name__)

NOTIFIER_LOCK = 0x6E6F7469  # the advisory lock's first key (the second is 0): one notifier at a time
# Longer than a call with its waits: bots.notices makes it at most twice (a 412), each up to three tries of
# GRAPH_HTTP_TIMEOUT_SECONDS with two waits of ten seconds at most between them.
LEASE_SECONDS = 300
RUN_SECONDS = 60.0
HAND_ON_PATIENCE = 5.0
STALE_SECONDS = 30 * 60
BACKOFF_SECONDS = (5.0, 15.0, 30.0)  # Graph unavailable: the pauses before trying again, the last one repeated
REFUSAL_KEPT_SECONDS = 30.0  # a set-up refusal fails the notices taken meanwhile without asking Graph again
WAKE_KEY, WAKE_SECONDS = "crier:notifier:woken", 5
AUDITED_KEY, AUDITED_SECONDS = "crier:notifier:audited:{campaign}:{code}", 3600  # one audit entry an hour and cause
TAKEN_FROM = ["running", "completed"]

# Due, or claimed by a notifier whose lease ran out.
DUE = """(w.notice = 'due' OR (w.notice = 'sending'
          AND w.claimed_at < clock_timestamp() - make_interval(secs => %(lease)s)))"""
# The campaigns first (the few urgent ones running or completed), then one probe of the partial index each: rows
# of a paused campaign, however many, are never read.
NEXT = f"""
SELECT c.id FROM campaigns_campaign AS c
 WHERE c.urgent AND c.status = ANY(%(states)s)
   AND EXISTS (SELECT 1 FROM delivery_delivery AS w
                WHERE w.id >= c.id * {1 << PERSON_BITS} AND w.id < (c.id + 1) * {1 << PERSON_BITS}
                  AND w.notice IN ('due', 'sending') AND {DUE})
 ORDER BY c.id LIMIT 1
"""
TAKE = f"""
UPDATE delivery_delivery AS d
   SET notice = 'sending', claimed_at = clock_timestamp()
  FROM (SELECT w.id, w.recipient_id FROM delivery_delivery AS w
         WHERE w.id >= %(lowest)s AND w.id < %(end)s AND w.notice IN ('due', 'sending') AND {DUE}
           AND (SELECT c.status FROM campaigns_campaign AS c WHERE c.id = %(campaign)s) = ANY(%(states)s)
         ORDER BY w.id LIMIT %(most)s FOR UPDATE SKIP LOCKED) AS due
  LEFT JOIN campaigns_recipient AS r ON r.id = due.recipient_id
 WHERE d.id = due.id
RETURNING d.id, d.claimed_at, r.aad_object_id, d.finished_at < clock_timestamp() - make_interval(secs => %(stale)s)
"""
# Every outcome names the claim it belongs to: a notifier that outlived its lease changes nothing.
CLAIMED = "SELECT unnest(%s::bigint[]) AS id, unnest(%s::timestamptz[]) AS claimed_at"
RECORD = f"""
UPDATE delivery_delivery AS d SET notice = %s
  FROM ({CLAIMED}) AS mine
 WHERE d.id = mine.id AND d.notice = 'sending' AND d.claimed_at = mine.claimed_at
"""
RELEASE = f"""
UPDATE delivery_delivery AS d SET notice = 'due', claimed_at = NULL
  FROM ({CLAIMED}) AS mine
 WHERE d.id = mine.id AND d.notice = 'sending' AND d.claimed_at = mine.claimed_at
"""

_notifier = Notifier()


@dataclass(frozen=True)
class Row:
    id: int
    claimed_at: Any
    aad_object_id: Any
    stale: bool


@dataclass
class _Refusals:
    """The last set-up refusal and when it came, and how many times running Graph was unavailable."""

    refused: NoticeRefused | None = None
    at: float = 0.0
    unavailable: int = 0

    def kept(self) -> NoticeRefused | None:
        if self.refused is not None and time.monotonic() - self.at < REFUSAL_KEPT_SECONDS:
            return self.refused
        return None


_one = OneAtATime(lock=NOTIFIER_LOCK, wake_key=WAKE_KEY, wake_seconds=WAKE_SECONDS,
                  start=lambda **patience: jobs.send_notices(**patience), waiting=lambda: _next_campaign() is not None,
                  hand_on_patience=HAND_ON_PATIENCE)


def notifier_wake() -> None:
    """Starts a notifier, unless one was started in the last ``WAKE_SECONDS`` (it takes every notice due)."""
    _one.wake()


def notifier_check() -> bool:
    """For the reconciler: starts a notifier when notices are due and none runs."""
    return _one.check()


def notices_drop(*, campaign_id: int) -> int:
    """A cancelled or recalled campaign's notices not sent yet are dropped (back to none), those claimed by a
    notifier too: nothing pops up for a message that was withdrawn, or in a campaign stopped. A call already on its
    way to Graph still arrives; what the notifier then records names its claim, which this ended."""
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE delivery_delivery SET notice = '' WHERE id >= %s AND id < %s"
                       " AND notice IN ('due', 'sending')", [lowest, end])
        return cursor.rowcount


def notices_run(*, patience: float = 0.0) -> int:
    """Sends the notices due, for ``RUN_SECONDS``; returns how many rows it took. ``patience``: how long to wait for
    the lock (the notifier that hands on to this one lets go of it as it ends)."""
    return _one.run(_run, patience=patience)


def _params(**more: Any) -> dict[str, Any]:
    return {"lease": LEASE_SECONDS, "states": TAKEN_FROM, **more}


def _next_campaign() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(NEXT, _params())
        found = cursor.fetchone()
    return found[0] if found else None


def _take(campaign_id: int) -> list[Row]:
    lowest, end = campaign_ids(campaign_id)
    with connection.cursor() as cursor:
        cursor.execute(TAKE, _params(lowest=lowest, end=end, campaign=campaign_id, most=MOST_RECIPIENTS,
                                     stale=STALE_SECONDS))
        return [Row(*found) for found in cursor.fetchall()]


def _run() -> int:
    deadline = time.monotonic() + RUN_SECONDS
    taken, refusals = 0, _Refusals()
    while time.monotonic() < deadline:
        campaign_id = _next_campaign()
        if campaign_id is None:
            _one.wake_clear()  # a notice due from now on wakes another notifier
            campaign_id = _next_campaign()
            if campaign_id is None:
                return taken
        rows = _take(campaign_id)
        taken += len(rows)
        try:
            pause = _notify(campaign_id, rows, refusals)
        except Exception:  # noqa: BLE001 - a bug or bad data: the rows are taken again after the lease
            logger.exception("sending the urgent notices of campaign %s raised", campaign_id)
            pause = 1.0
        if pause:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    return taken


def _notify(campaign_id: int, rows: list[Row], refusals: _Refusals) -> float:
    """One call for the rows taken; returns how long to pause before the next (Graph unavailable)."""
    stale = [row for row in rows if row.stale or not row.aad_object_id]  # too late, or the person was deleted
    live = [row for row in rows if row not in stale]
    _record(campaign_id, stale, notice="failed")
    if not live:
        return 0.0
    refused = refusals.kept()
    if refused is None:
        text = Campaign.objects.filter(pk=campaign_id).values_list("urgent_text", flat=True).first()
        if not text:  # the campaign or its words went meanwhile: nothing to pop up
            _record(campaign_id, live, notice="failed")
            return 0.0
        try:
            _notifier.send(text=text, aad_object_ids=[str(row.aad_object_id) for row in live])
        except NoticeRefused as error:
            refused = error
        else:
            refusals.unavailable = 0
            _record(campaign_id, live, notice="notified")
            return 0.0
    if refused.code == UNANSWERED:  # it may have popped up: never again, with a sound
        logger.warning("urgent notices of campaign %s: %s", campaign_id, refused.message)
        _record(campaign_id, live, notice="unanswered")
        return 0.0
    if refused.transient:
        refusals.unavailable += 1
        logger.warning("urgent notices of campaign %s wait: %s", campaign_id, refused.message)
        _release(live)
        return BACKOFF_SECONDS[min(refusals.unavailable, len(BACKOFF_SECONDS)) - 1]
    if refusals.refused is not refused:
        refusals.refused, refusals.at = refused, time.monotonic()
    _record(campaign_id, live, notice="failed")
    _audit_refusal(campaign_id, refused)
    return 0.0


def _claims(rows: list[Row]) -> list[Any]:
    return [[row.id for row in rows], [row.claimed_at for row in rows]]


def _record(campaign_id: int, rows: list[Row], *, notice: str) -> None:
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(RECORD, [notice, *_claims(rows)])
        written = cursor.rowcount
    progress.record(campaign_id, **{"notice_failed" if notice == "failed" else "notified": written})


def _release(rows: list[Row]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(RELEASE, _claims(rows))


def _audit_refusal(campaign_id: int, refused: NoticeRefused) -> None:
    """Once an hour for each campaign and cause: what Graph refused, and what to do."""
    try:
        if not progress.client().set(AUDITED_KEY.format(campaign=campaign_id, code=refused.code), 1, nx=True,
                                     ex=AUDITED_SECONDS):
            return
    except redis.RedisError:
        pass
    logger.error("urgent notices of campaign %s refused: %s", campaign_id, refused.message)
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    audit_record(AuditEntry.Action.NOTICE_REFUSED, campaign=campaign,
                 summary=f"Urgent notices were not sent ({refused.code}): {refused.message}"[:500],
                 detail={"code": refused.code, "message": refused.message})
