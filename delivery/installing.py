"""Installing the app for the people a campaign reaches who lack it (``Campaign.install_app``), then sending.

A send that Teams answers "not installed" hands its row to the installer (status ``installing``, see
``delivery.sending``) and its claim ends there. No install happens under a send's claim: however long Graph takes,
the message is sent once, after, by a deliver task's own claim.

The installer:

* is one task at a time across every worker (an advisory lock), so Graph's pace for installs is its own
  (``bots.installs.InstallPace``). It works for ``RUN_SECONDS``, then hands on to the next task;
* takes the rows of running campaigns only, a batch at a time, claiming each (``claimed_at``). A paused campaign's
  rows wait for its resume, and a cancel skips them. A row claimed longer than ``LEASE_SECONDS`` ago belongs to an
  installer that died and is taken again: Graph answers an install asked twice with 409;
* marks each person's address before installing (``installed_by_crier_at``), so that the installation's own
  activity sets off no welcome message: the person did not install the app themselves;
* installs in ``THREADS`` threads, each call paced, and records what came of each. Installed, or found there
  already: the row is due to be sent at once, and a deliver task is queued. Refused for everyone (consent, Crier's
  credentials, the app missing from the catalog): the campaign pauses saying what to do, and the row waits for
  the resume. Refused for this person (a policy, an account gone): the delivery fails with Graph's reason and what
  to do. Graph unavailable: tried again later, up to ``MAX_ATTEMPTS`` times.

It is woken by a send that hands it a row (at most once every ``WAKE_SECONDS``), by a resume, and by the reconciler
whenever rows wait and no installer runs.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from bots.addresses import address_join, addresses_crier_installs
from bots.installs import CREDENTIALS, AppInstaller, InstallRefused
from campaigns.selectors import opted_out_sql
from core.channels import TransportError

from . import feeding, jobs, progress, webhooks
from .models import Delivery
from .one_at_a_time import OneAtATime

logger = logging.getLogger(__name__)

INSTALLER_LOCK = 0x696E7374  # the advisory lock's first key (the second is 0): one installer at a time
LEASE_SECONDS = 300  # longer than the slowest install (Graph's timeouts and waits)
RUN_SECONDS = 60.0
HAND_ON_PATIENCE = 5.0  # how long the next installer waits for this one to let go of the lock
BATCH = 56  # rows claimed at a time: two seconds at Graph's pace
THREADS = 16  # installs in flight: enough for Graph's pace at up to half a second a call
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = (10, 60, 300, 900)
WAKE_KEY, WAKE_SECONDS = "crier:installer:woken", 5
NEVER_INSTALL_FOR = frozenset({"uninstalled", "blocked"})  # they removed or blocked the app themselves
# Refusals about one person; the others (consent, the catalog, Graph away) concern every install.
PERSONAL = frozenset({"AppBlockedByPolicy", "UserNotFound"})
# Refusals that an administrator's fix ends for everyone: the campaign pauses, saying what to do, and its rows wait.
SETUP = frozenset({"AppConsentMissing", "AppNotInCatalog", CREDENTIALS})

_installer = AppInstaller()

# Rows due to be installed for, claimed; with the person and where Teams reaches them. Times are the clock's, not
# the transaction's: a row's claim is the moment it was taken.
TAKE = f"""
UPDATE delivery_delivery AS d
   SET claimed_at = clock_timestamp(), install_attempts = d.install_attempts + 1
  FROM (SELECT w.id, w.recipient_id, c.kind, c.category_id
          FROM delivery_delivery AS w JOIN campaigns_campaign AS c ON c.id = w.campaign_id
         WHERE w.status = 'installing' AND c.status = 'running'
           AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= clock_timestamp())
           AND (w.claimed_at IS NULL OR w.claimed_at < clock_timestamp() - make_interval(secs => %s))
         ORDER BY w.id LIMIT %s FOR UPDATE OF w SKIP LOCKED) AS due
  JOIN campaigns_category AS cat ON cat.id = due.category_id
  LEFT JOIN campaigns_recipient AS r ON r.id = due.recipient_id
  {address_join('r')}
 WHERE d.id = due.id
RETURNING d.id, d.campaign_id, d.claimed_at, d.install_attempts, due.kind, r.aad_object_id, COALESCE(r.is_active, false),
          COALESCE(NULLIF(a.tenant_id, ''), NULLIF(r.tenant_id, ''), %s), a.state,
          {opted_out_sql(recipient="r.id", mandatory="cat.mandatory", category="cat.id")}
"""
WAITING = """
SELECT EXISTS (
  SELECT 1 FROM delivery_delivery AS w JOIN campaigns_campaign AS c ON c.id = w.campaign_id
   WHERE w.status = 'installing' AND c.status = 'running'
     AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= clock_timestamp())
     AND (w.claimed_at IS NULL OR w.claimed_at < clock_timestamp() - make_interval(secs => %s)))
"""
# Every outcome names the claim it belongs to: an installer that outlived its lease changes nothing.
CLAIMED = "id = %s AND status = 'installing' AND claimed_at = %s"


@dataclass(frozen=True)
class Row:
    id: int
    campaign_id: int
    claimed_at: Any
    attempts: int
    kind: str
    aad_object_id: Any
    is_active: bool
    tenant_id: str
    address_state: str | None
    opted_out: bool  # since the send handed the row over

    @property
    def claim(self) -> list[Any]:
        return [self.id, self.claimed_at]

    @property
    def installable(self) -> bool:
        return bool(self.aad_object_id and self.is_active and self.tenant_id and not self.opted_out) and (
            self.address_state not in NEVER_INSTALL_FOR)


_one = OneAtATime(lock=INSTALLER_LOCK, wake_key=WAKE_KEY, wake_seconds=WAKE_SECONDS,
                  start=lambda **patience: jobs.install_apps(**patience), waiting=lambda: _waiting(),
                  hand_on_patience=HAND_ON_PATIENCE)


def installer_wake() -> None:
    """Starts an installer, unless one was started in the last ``WAKE_SECONDS`` (it takes every row due)."""
    _one.wake()


def installer_check() -> bool:
    """For the reconciler: starts an installer when rows are due and none runs."""
    return _one.check()


def installs_run(*, patience: float = 0.0) -> int:
    """Installs for the rows due, for ``RUN_SECONDS``; returns how many rows it took. ``patience``: how long to wait
    for the lock (the installer that hands on to this one lets go of it as it ends)."""
    return _one.run(_run, patience=patience)


def _waiting() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(WAITING, [LEASE_SECONDS])
        return bool(cursor.fetchone()[0])


def _take() -> list[Row]:
    with connection.cursor() as cursor:
        cursor.execute(TAKE, [LEASE_SECONDS, BATCH, settings.BOT_TENANT_ID or ""])
        return [Row(*found) for found in cursor.fetchall()]


def _run() -> int:
    deadline = time.monotonic() + RUN_SECONDS
    taken, next_look = 0, 0.0
    in_flight: dict[Future, Row] = {}
    with ThreadPoolExecutor(THREADS, thread_name_prefix="install") as pool:
        while True:
            took: list[Row] = []
            now = time.monotonic()
            if now < deadline and len(in_flight) < BATCH and now >= next_look:
                took = _take()
                if not took and not in_flight:
                    _one.wake_clear()  # a row handed over from now on wakes another installer
                    took = _take()
                next_look = 0.0 if took else now + 1.0  # none due: look again in a second, not at every answer
                taken += len(took)
                for row in _started(took):
                    in_flight[pool.submit(_install, row)] = row
            if not in_flight:
                if took:
                    continue  # none of them could be installed for: there may be more
                return taken
            finished, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                row = in_flight.pop(future)
                try:
                    _record(row, future.result())
                except Exception:  # noqa: BLE001 - one row's trouble is its own: after the lease it is taken again
                    logger.exception("recording the install for delivery %s raised", row.id)


def _started(rows: list[Row]) -> list[Row]:
    """The rows to install for, their people marked; the others go back to be sent, where their send says why
    not (deleted, inactive, opted out, without an Entra id, or they removed or blocked the app), or end when installers kept
    dying on them."""
    installable = []
    for row in rows:
        try:
            if row.attempts > MAX_ATTEMPTS:  # taken again after every lease: its installs never came to an outcome
                _fail(row, InstallRefused("GraphUnavailable", f"Installing the app was tried {MAX_ATTEMPTS} times "
                                          "and never came to an answer Crier could record; see the workers' logs."))
            elif row.installable:
                installable.append(row)
            else:
                _send_again(row, install="")
        except Exception:  # noqa: BLE001 - one row's trouble is its own: after the lease it is taken again
            logger.exception("handing back delivery %s raised", row.id)
    try:
        addresses_crier_installs(aad_object_ids=[str(row.aad_object_id) for row in installable])
    except Exception:  # noqa: BLE001 - unmarked, an install would set off a welcome: none now, all after the lease
        logger.exception("marking %d people as installed for by Crier raised", len(installable))
        return []
    return installable


def _install(row: Row) -> str | InstallRefused:
    """In a thread of the pool: Graph's answer, without touching the database."""
    try:
        done = _installer.install(aad_object_id=str(row.aad_object_id), tenant_id=row.tenant_id)
    except InstallRefused as refused:
        return refused
    except Exception as error:  # noqa: BLE001 - a bug or bad data: tried again later, then failed, never lost
        logger.exception("installing the app for delivery %s raised", row.id)
        return InstallRefused("crier_error", f"{type(error).__name__}: {str(error)[:300]}", transient=True)
    return Delivery.Install.INSTALLED if done else Delivery.Install.PRESENT


def _record(row: Row, outcome: str | InstallRefused) -> None:
    """What came of one install, on its row. The person's mark as installed by Crier stays whatever came of it: a
    409 or an error may follow an install that Graph made (a second row of theirs, a retried call), and the mark
    expires by itself (``bots.services``)."""
    if isinstance(outcome, str):
        if _send_again(row, install=outcome) and outcome == Delivery.Install.INSTALLED:
            progress.record(row.campaign_id, installed=1)
        return
    if outcome.code in SETUP:
        _wait_for_the_fix(row, outcome)
        return
    if outcome.transient and row.attempts < MAX_ATTEMPTS:
        wait_seconds = BACKOFF_SECONDS[min(row.attempts, len(BACKOFF_SECONDS)) - 1]
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE delivery_delivery SET claimed_at = NULL, next_attempt_at = clock_timestamp() + make_interval(secs => %s),"
                f" error_code = %s, error_message = %s WHERE {CLAIMED}",
                [wait_seconds, outcome.code[:100], outcome.message[:1000], *row.claim])
        return
    _fail(row, outcome)


def _wait_for_the_fix(row: Row, refused: InstallRefused) -> None:
    """The campaign pauses saying what to do; then its row waits for the resume, this attempt not counted. Were the
    pause to fail, the row would stay claimed until its lease ends, and be tried again then."""
    from .control import campaign_pause_saying

    campaign_pause_saying(campaign_id=row.campaign_id, reason=(
        f"Paused automatically: the app could not be installed ({refused.code}). {refused.message} Then resume it, "
        "or stop installing the app to send to everyone as they are."))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_delivery SET claimed_at = NULL, next_attempt_at = NULL, install_attempts = install_attempts - 1,"
            f" error_code = %s, error_message = %s WHERE {CLAIMED}", [refused.code[:100], refused.message[:1000], *row.claim])


def _send_again(row: Row, *, install: str) -> bool:
    """The row is due to be sent now, by a deliver task of its own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_delivery SET status = 'retrying', next_attempt_at = now(), claimed_at = NULL,"
            f" install = %s, error_code = '', error_message = '' WHERE {CLAIMED}", [install, *row.claim])
        written = bool(cursor.rowcount)
    if written:
        feeding.publish([row.id], queue=feeding.queue_for(row.kind))
    return written


def _fail(row: Row, refused: InstallRefused) -> None:
    from .control import campaign_watch_errors

    update = (
        "UPDATE delivery_delivery SET status = 'failed', finished_at = now(), claimed_at = NULL, error_code = %s,"
        f" error_message = %s, last_status_code = NULL WHERE {CLAIMED}"
    )
    params = [refused.code[:100], refused.message[:1000], *row.claim]
    wanted = webhooks.wanted_types()
    with connection.cursor() as cursor:
        if "delivery.failed" in wanted:
            cursor.execute(f"WITH done AS ({update} {webhooks.DELIVERY_RETURNING}) "
                           f"{webhooks.delivery_events_sql(returning='done')}", [*params, list(wanted)])
        else:
            cursor.execute(update, params)
        written = bool(cursor.rowcount)
    if not written:
        return
    logger.info("delivery %s failed: the app could not be installed (%s)", row.id, refused.code)
    progress.record(row.campaign_id, failed=1)
    campaign_watch_errors(campaign_id=row.campaign_id, error=TransportError(
        code=refused.code, message=refused.message, status=None, permanent=True, personal=refused.code in PERSONAL))
