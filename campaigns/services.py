"""Writes for people, audiences, templates and opt-outs."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .audit import SYSTEM, Actor
from .errors import ApplicationError
from .models import AuditEntry, Category, OptOut, Recipient, RecipientSync

RECIPIENT_FIELDS = (
    "email",
    "upn",
    "aad_object_id",
    "tenant_id",
    "first_name",
    "last_name",
    "display_name",
    "department",
    "job_title",
    "location",
    "country",
    "time_zone",
    "locale",
    "start_date",
    "is_active",
    "attributes",
)


def _by_column(column: str, values: list[Any], other: str) -> list[tuple[Any, Any]]:
    """(value, other) for the people whose ``column`` is one of ``values``: one array parameter,
    where ``__in`` would send 10,000."""
    meta, quote = Recipient._meta, connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)}, {quote(other)} FROM {quote(meta.db_table)} "
            f"WHERE {quote(column)} = ANY(%s::{meta.get_field(column).db_type(connection)}[])",
            [values],
        )
        return cursor.fetchall()


@functools.cache
def _upsert_statement(*, with_sync: bool) -> tuple[str, tuple[Any, ...]]:
    """One ``INSERT … ON CONFLICT (external_id) DO UPDATE`` whose rows PostgreSQL reads from one JSON
    parameter (``jsonb_to_recordset``): for 10,000 people, Django's ``bulk_create`` spent seconds
    preparing 170,000 parameters. Built from the model, so a field left out of a row gets the
    model's default, as a new ``Recipient`` would. Parameters: the defaults returned, the sync's id,
    then the rows as a JSON array."""
    meta, quote = Recipient._meta, connection.ops.quote_name
    columns, record, selected, defaults = [], [], [], []
    for name in ("external_id", *RECIPIENT_FIELDS):
        model_field = meta.get_field(name)
        column = quote(model_field.column)
        columns.append(column)
        record.append(f"{column} {model_field.db_type(connection)}")
        default = model_field.get_default()
        if default is None or name == "external_id":
            selected.append(f"r.{column}")
        else:
            selected.append(f"coalesce(r.{column}, %s)")
            defaults.append(model_field.get_db_prep_save(default, connection))
    sync_column = quote(meta.get_field("last_sync").column)
    updated = [*columns[1:], *([sync_column] if with_sync else []), quote("updated_at")]
    statement = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}, {sync_column}, {quote('created_at')}, {quote('updated_at')}) "
        f"SELECT {', '.join(selected)}, %s, now(), now() FROM jsonb_to_recordset(%s::jsonb) AS r({', '.join(record)}) "
        f"ON CONFLICT ({quote('external_id')}) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in updated)}"
    )
    return statement, tuple(defaults)


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def recipients_bulk_upsert(*, rows: list[dict[str, Any]], sync: RecipientSync | None = None) -> UpsertResult:
    """Creates or updates people by ``external_id`` in one statement. Each row is a full record:
    a field left out is reset to its empty value. A row whose Entra object id already belongs to
    someone else is reported (with its index) and the others are still saved. With ``sync``, the
    people are marked as listed by that full sync."""
    if sync is not None and sync.finished_at is not None:
        raise ApplicationError(f"Sync {sync.pk} is finished; start a new one.", code="invalid_state", status=409)
    result = UpsertResult()
    external_ids = [row["external_id"] for row in rows]
    aad_ids = [row["aad_object_id"] for row in rows if row.get("aad_object_id")]
    owners = dict(_by_column("aad_object_id", aad_ids, "external_id")) if aad_ids else {}
    valid: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        aad = row.get("aad_object_id")
        if aad and owners.get(aad, row["external_id"]) != row["external_id"]:
            result.errors.append(
                {"index": index, "field": "aad_object_id", "message": f"Already used by recipient {owners[aad]!r}."}
            )
            continue
        valid.append(row)
    try:
        with transaction.atomic():
            before = dict(_by_column("external_id", external_ids, "is_active"))
            if valid:
                statement, defaults = _upsert_statement(with_sync=sync is not None)
                rows_json = json.dumps(
                    [{"external_id": row["external_id"], **{k: row[k] for k in RECIPIENT_FIELDS if k in row}} for row in valid],
                    default=str,  # UUIDs and dates, as PostgreSQL reads them
                )
                with connection.cursor() as cursor:
                    cursor.execute(statement, [*defaults, sync.pk if sync is not None else None, rows_json])
    except IntegrityError as exc:
        # Another upload gave one of these Entra object ids to someone else in the meantime.
        raise ApplicationError(
            "Another upload changed some of these people at the same time; nothing was saved: send the batch again.",
            code="concurrent_update",
            status=409,
        ) from exc
    for row in valid:
        if row["external_id"] not in before:
            result.created += 1
        else:
            result.updated += 1
            if before[row["external_id"]] and not row.get("is_active", True):
                result.deactivated += 1
    return result


@dataclass
class SyncResult:
    listed: int
    deactivated: int
    dry_run: bool


def recipient_sync_finish(*, sync: RecipientSync, dry_run: bool) -> SyncResult:
    """Deactivates everyone active whom the sync did not list; with ``dry_run``, only counts them.
    A sync that listed nobody is refused: it would deactivate everyone."""
    with transaction.atomic():
        sync = RecipientSync.objects.select_for_update().get(pk=sync.pk)
        if sync.finished_at is not None:
            raise ApplicationError(f"Sync {sync.pk} is already finished.", code="invalid_state", status=409)
        listed = Recipient.objects.filter(last_sync=sync).count()
        if listed == 0:
            raise ApplicationError(
                "This sync listed nobody, so finishing it would deactivate everyone; upload the people first.",
                code="empty_sync",
            )
        leavers = Recipient.objects.filter(is_active=True).exclude(last_sync=sync)
        if dry_run:
            return SyncResult(listed=listed, deactivated=leavers.count(), dry_run=True)
        deactivated = leavers.update(is_active=False, updated_at=timezone.now())
        sync.finished_at = timezone.now()
        sync.deactivated = deactivated
        sync.save(update_fields=["finished_at", "deactivated"])
    return SyncResult(listed=listed, deactivated=deactivated, dry_run=False)


def opt_out_record(
    *, recipient: Recipient, source: str, category: Category | None = None, note: str = "", actor: Actor = SYSTEM
) -> tuple[OptOut, bool]:
    """Idempotent: recording the same opt-out twice keeps the first (and its source). A new one is
    in the audit log, with who recorded it (nobody: the person did, in Teams)."""
    with transaction.atomic():
        opt_out, created = OptOut.objects.get_or_create(
            recipient=recipient, category=category, defaults={"source": source, "note": note[:500]}
        )
        if created:
            actor.record(
                AuditEntry.Action.OPT_OUT_ADDED,
                summary=f"{recipient} opted out of {category or 'every non-mandatory category'} "
                f"({opt_out.get_source_display()})",
                detail={"recipient": recipient.external_id, "category": category.slug if category else None, "source": source},
            )
    return opt_out, created


def opt_out_delete(*, opt_out: OptOut, actor: Actor) -> None:
    """Lifts one opt-out: the person receives that category again."""
    with transaction.atomic():
        deleted, _ = OptOut.objects.filter(pk=opt_out.pk).delete()
        if deleted:
            actor.record(
                AuditEntry.Action.OPT_OUT_REMOVED,
                summary=f"Opt-out of {opt_out.recipient} from {opt_out.category or 'every non-mandatory category'} lifted",
                detail={"recipient": opt_out.recipient.external_id, "source": opt_out.source},
            )


def opt_out_remove_all(*, recipient: Recipient, actor: Actor = SYSTEM) -> int:
    """The person opted back in ("start", or installed the bot again)."""
    with transaction.atomic():
        deleted, _ = OptOut.objects.filter(recipient=recipient).delete()
        if deleted:
            actor.record(
                AuditEntry.Action.OPT_OUT_REMOVED, summary=f"{recipient} opted back in ({deleted} opt-outs lifted)",
                detail={"recipient": recipient.external_id},
            )
    return deleted


