"""Writes for people, audiences, templates and opt-outs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
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
    owners = dict(
        Recipient.objects.filter(aad_object_id__in=aad_ids).values_list("aad_object_id", "external_id")
    )
    valid: list[Recipient] = []
    for index, row in enumerate(rows):
        aad = row.get("aad_object_id")
        if aad and owners.get(aad, row["external_id"]) != row["external_id"]:
            result.errors.append(
                {"index": index, "field": "aad_object_id", "message": f"Already used by recipient {owners[aad]!r}."}
            )
            continue
        valid.append(
            Recipient(
                external_id=row["external_id"], last_sync=sync, **{k: row[k] for k in RECIPIENT_FIELDS if k in row}
            )
        )
    try:
        with transaction.atomic():
            before = dict(
                Recipient.objects.filter(external_id__in=external_ids).values_list("external_id", "is_active")
            )
            Recipient.objects.bulk_create(
                valid,
                update_conflicts=True,
                unique_fields=["external_id"],
                update_fields=[*RECIPIENT_FIELDS, "updated_at", *(["last_sync"] if sync is not None else [])],
            )
    except IntegrityError as exc:
        # Another upload gave one of these Entra object ids to someone else in the meantime.
        raise ApplicationError(
            "Another upload changed some of these people at the same time; nothing was saved: send the batch again.",
            code="concurrent_update",
            status=409,
        ) from exc
    for recipient in valid:
        if recipient.external_id not in before:
            result.created += 1
        else:
            result.updated += 1
            if before[recipient.external_id] and not recipient.is_active:
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


