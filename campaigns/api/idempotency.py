"""``Idempotency-Key`` on POST, as HR systems that retry expect: a replay within 24 hours returns
the first answer; the same key with a different body is a 422; a replay while the first request is
still running is a 409. Keys belong to the API key that sent them. A first answer that asks for a
retry (a server error, a 429, a 409 ``concurrent_update``) is not kept, so the retry runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from campaigns.models import ApiKey, IdempotencyRecord

HEADER = "Idempotency-Key"
KEPT_FOR = timedelta(hours=24)


@dataclass
class Replay(Exception):
    status: int
    body: Any


def request_fingerprint(*, method: str, path: str, data: Any) -> str:
    """The same request, whatever the JSON's spacing or key order."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def idempotency_begin(*, api_key: ApiKey, key: str, fingerprint: str) -> IdempotencyRecord:
    """Claims the key for this request, or raises Replay (the first answer) or an ApplicationError."""
    if not key.strip() or len(key) > 255:
        raise ApplicationError(
            f"{HEADER} must be 1 to 255 characters.", fields={HEADER: ["1 to 255 characters."]}
        )
    with transaction.atomic():
        record, created = IdempotencyRecord.objects.select_for_update().get_or_create(
            api_key=api_key, key=key, defaults={"request_hash": fingerprint}
        )
        if not created and record.created_at < timezone.now() - KEPT_FOR:
            record.delete()
            record = IdempotencyRecord.objects.create(api_key=api_key, key=key, request_hash=fingerprint)
            created = True
    if created:
        return record
    if record.request_hash != fingerprint:
        raise ApplicationError(
            f"This {HEADER} was used for a different request; use a new key for a new request.",
            code="idempotency_key_reused",
            status=422,
        )
    if not record.completed:
        raise ApplicationError(
            f"The first request with this {HEADER} is still being processed; try again shortly.",
            code="idempotency_key_in_progress",
            status=409,
        )
    raise Replay(status=record.status_code, body=record.body)


# 409 codes that say "try again": replaying them would refuse the very retry they ask for.
TRANSIENT_CONFLICTS = frozenset({"concurrent_update", "idempotency_key_in_progress"})


def _is_transient(*, status: int, body: Any) -> bool:
    if status >= 500 or status == 429:
        return True
    if status != 409 or not isinstance(body, dict):
        return False
    error = body.get("error")
    return isinstance(error, dict) and error.get("code") in TRANSIENT_CONFLICTS


def idempotency_finish(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Keeps the answer for replay, unless it is one a retry may change (see ``_is_transient``)."""
    if _is_transient(status=status, body=body):
        record.delete()
        return
    record.completed = True
    record.status_code = status
    record.body = body
    record.save(update_fields=["completed", "status_code", "body"])


def idempotency_forget_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - KEPT_FOR).delete()
    return deleted
