"""Events out: deliveries and opt-outs, sent to the endpoints that subscribed to them.

Events go to an outbox table, in the same statement that records what happened (so no event is
lost and none is invented), stamped with their transaction. A dispatcher (beat, every ``WEBHOOK_INTERVAL_SECONDS``) sends each
endpoint its events in transaction order, only from transactions older than every running one (so
none can appear behind the cursor later), up to ``WEBHOOK_BATCH`` a call, as ``{"events": [...]}``, signed:
``Crier-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>``.
A call that fails is retried with exponential backoff (at most an hour apart) from the same event;
every call is logged with its status and a short excerpt of its answer. Calls go only to targets
outside Crier's network (``targets``), follow no redirect, and keep no more of an answer than
``EXCERPT_CHARS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Min, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from core import http
from core.connections import lock_acquire, lock_release, redis_for

from . import targets
from .models import WebhookAttempt, WebhookEndpoint, WebhookEvent

SIGNATURE_HEADER = "Crier-Signature"
# Events of transactions older than every running one: nothing can commit before them any more.
# Transaction ids are numbered across the whole server, so the running ones seen to belong to another
# database (which never writes events here) are left out; any other, or one that cannot be told apart,
# still holds events back.
OLDEST_RUNNING_TRANSACTION = RawSQL(
    """
    (SELECT COALESCE(
                (SELECT min(running.xid::text::bigint)
                   FROM pg_snapshot_xip(now.snapshot) AS running(xid)
                  WHERE NOT EXISTS (
                        SELECT 1 FROM pg_stat_activity AS other
                         WHERE other.datname <> current_database()
                           AND other.backend_xid::text::bigint = running.xid::text::bigint %% 4294967296)),
                pg_snapshot_xmax(now.snapshot)::text::bigint)
       FROM (SELECT pg_current_snapshot() AS snapshot) AS now)
    """,
    [],
)
EXCERPT_CHARS = 200
logger = logging.getLogger(__name__)
_wanted: tuple[float, frozenset[str]] = (0.0, frozenset())


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def wanted_types() -> frozenset[str]:
    """The event types some active endpoint subscribes to (looked up at most every few seconds:
    the engine asks on every delivery)."""
    global _wanted
    checked_at, types = _wanted
    if time.monotonic() - checked_at > 5:
        subscribed = WebhookEndpoint.objects.filter(active=True).values_list("events", flat=True)
        types = frozenset(event for events in subscribed for event in events)
        _wanted = (time.monotonic(), types)
    return types


def forget_subscriptions() -> None:
    global _wanted
    _wanted = (0.0, frozenset())


def delivery_events_sql(*, returning: str) -> str:
    """An INSERT of one outbox event per delivery row named by the CTE ``returning`` (which returns
    id, campaign_id, recipient_id, status, skip_reason, error_code, activity_id, finished_at), for
    the types in the query's last parameter."""
    return f"""
INSERT INTO delivery_webhookevent (type, payload, created_at)
SELECT 'delivery.' || d.status,
       json_build_object('delivery', d.id, 'campaign', d.campaign_id, 'recipient', r.external_id,
                         'status', d.status, 'skip_reason', d.skip_reason, 'error_code', d.error_code,
                         'activity_id', d.activity_id, 'finished_at', d.finished_at),
       now()
  FROM {returning} AS d JOIN campaigns_recipient AS r ON r.id = d.recipient_id
 WHERE 'delivery.' || d.status = ANY(%s)
"""


DELIVERY_RETURNING = "RETURNING id, campaign_id, recipient_id, status, skip_reason, error_code, activity_id, finished_at"


def event_record(*, type: str, payload: dict[str, Any]) -> None:
    if type in wanted_types():
        WebhookEvent.objects.create(type=type, payload=json.loads(json.dumps(payload, cls=DjangoJSONEncoder)))


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def dispatch() -> int:
    """One tick: sends each due endpoint its waiting events. Returns how many were delivered."""
    delivered = 0
    due = WebhookEndpoint.objects.filter(active=True).exclude(next_attempt_at__gt=timezone.now())
    client = redis_for(settings.REDIS_URL)
    longest_tick = settings.WEBHOOK_MAX_BATCHES_PER_TICK * (settings.WEBHOOK_TIMEOUT_SECONDS + 5) + 60
    for endpoint in due:
        name = f"crier:webhook:{endpoint.pk}"
        token = lock_acquire(client, name, ttl_seconds=longest_tick)
        if token is None:
            continue  # another tick is sending to it
        try:
            endpoint.refresh_from_db()  # its cursor as the last tick left it
            delivered += _send_waiting(endpoint)
        except Exception:  # one endpoint's fault (a bug, bad data) must not keep the others from theirs
            logger.exception("webhook endpoint %s: dispatch failed", endpoint.pk)
            _back_off(endpoint)
        finally:
            lock_release(client, name, token)
    _forget_delivered()
    return delivered


def _send_waiting(endpoint: WebhookEndpoint) -> int:
    delivered = 0
    for _ in range(settings.WEBHOOK_MAX_BATCHES_PER_TICK):
        after = Q(transaction_id__gt=endpoint.cursor_transaction) | Q(
            transaction_id=endpoint.cursor_transaction, id__gt=endpoint.cursor
        )
        events = list(
            WebhookEvent.objects.filter(after, type__in=endpoint.events, transaction_id__lt=OLDEST_RUNNING_TRANSACTION)
            .order_by("transaction_id", "id")[: settings.WEBHOOK_BATCH]
        )
        if not events:
            break
        if not _post(endpoint, events):
            break
        delivered += len(events)
    return delivered


def _post(endpoint: WebhookEndpoint, events: list[WebhookEvent]) -> bool:
    body = json.dumps(
        {"events": [{"id": e.id, "type": e.type, "created_at": e.created_at.isoformat(), "data": e.payload} for e in events]}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret=endpoint.secret, timestamp=int(time.time()), body=body),
        "User-Agent": "Crier-Webhooks/1",
    }
    started = time.monotonic()
    status, error = None, ""
    try:
        response = targets.request("POST", endpoint.url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
        status = response.status
        if not 200 <= status < 300:
            error = excerpt(response.body.decode("utf-8", "replace"))
    except http.TargetRefused as exc:
        error = excerpt(f"Refused: {exc}.")
    except http.HttpTimeout as exc:
        error = excerpt(str(exc))
    except Exception as exc:  # a fault of Crier's: recorded and backed off like any failed call
        logger.exception("webhook endpoint %s: the call raised", endpoint.pk)
        error = excerpt(f"Crier error: {type(exc).__name__}")
    ok = status is not None and 200 <= status < 300
    WebhookAttempt.objects.create(
        endpoint=endpoint, first_event_id=events[0].id, last_event_id=events[-1].id, events=len(events),
        status_code=status, ok=ok, error=error, duration_ms=int((time.monotonic() - started) * 1000),
    )
    if ok:
        endpoint.cursor, endpoint.cursor_transaction = events[-1].id, events[-1].transaction_id
        endpoint.failures, endpoint.next_attempt_at = 0, None
        endpoint.save(update_fields=["cursor", "cursor_transaction", "failures", "next_attempt_at"])
    else:
        _back_off(endpoint)
    return ok


def _back_off(endpoint: WebhookEndpoint) -> None:
    """One more failure in a row: the next call waits exponentially longer (at most an hour)."""
    endpoint.failures += 1
    delay = min(3600.0, 2.0 ** endpoint.failures) * random.uniform(0.8, 1.2)
    endpoint.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    endpoint.save(update_fields=["failures", "next_attempt_at"])


def excerpt(text: str) -> str:
    """The first EXCERPT_CHARS characters of an answer, on one line (kept as text, never shown as HTML)."""
    return " ".join(text.split())[:EXCERPT_CHARS]


def _forget_delivered() -> None:
    """Drops events every active endpoint has had, once they are a day old."""
    oldest_needed = WebhookEndpoint.objects.filter(active=True).aggregate(at=Min("cursor_transaction"))["at"]
    old = WebhookEvent.objects.filter(created_at__lt=timezone.now() - timedelta(days=1))
    if oldest_needed is not None:
        old = old.filter(transaction_id__lt=oldest_needed)
    old.delete()
