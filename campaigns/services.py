"""Writes for people, audiences, templates and opt-outs."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from core.errors import ApplicationError

from .approvals import APPROVED_FIELDS, approval_withdraw, change_record
from .audit import SYSTEM, Actor
from .entra_fields import owned_fields
from .models import AuditEntry, Campaign, Category, OptOut, Recipient, RecipientSync
from .states import move_require

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
# A deadlock or a serialization failure: the upload lost a race with another and may simply be sent again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


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
    """One statement that writes a whole batch, reading its rows from one JSON parameter (for
    10,000 people, Django's ``bulk_create`` spent seconds preparing 170,000 parameters). A row
    updates only the fields it names (``doc ? 'field'``); a new person gets the model's default
    for the fields their row leaves out, as a new ``Recipient`` would. The update and the insert
    see the same snapshot, so the insert takes exactly the people who did not exist; one created
    meanwhile by another upload is left out (``ON CONFLICT DO NOTHING``) and counted by neither.
    Built from the model. Parameters: the sync's id, the rows as a JSON array, then the field names
    and defaults returned. Returns one row: how many people were updated, how many inserted."""
    meta, quote = Recipient._meta, connection.ops.quote_name
    table, key = quote(meta.db_table), quote(meta.get_field("external_id").column)
    columns, record, values, value_params, assignments, assignment_params = [], [], [], [], [], []
    for name in ("external_id", *RECIPIENT_FIELDS):
        model_field = meta.get_field(name)
        column = quote(model_field.column)
        columns.append(column)
        record.append(f"{column} {model_field.db_type(connection)}")
        default = model_field.get_default()
        if default is None or name == "external_id":
            value, params = f"s.{column}", []
        else:
            value, params = f"coalesce(s.{column}, %s)", [model_field.get_db_prep_save(default, connection)]
        values.append(value)
        value_params.extend(params)
        if name != "external_id":
            assignments.append(f"{column} = CASE WHEN s.doc ? %s THEN {value} ELSE t.{column} END")
            assignment_params.extend([name, *params])
    # HR setting is_active decides it from then on: the Entra ID sync no longer brings the person back.
    flag = quote(meta.get_field("inactive_from_entra").column)
    assignments.append(f"{flag} = CASE WHEN s.doc ? 'is_active' THEN false ELSE t.{flag} END")
    sync_column = quote(meta.get_field("last_sync").column)
    if with_sync:
        assignments.append(f"{sync_column} = s.sync")
    statement = (
        f"WITH s AS (SELECT j.doc, %s::bigint AS sync, r.* FROM jsonb_array_elements(%s::jsonb) AS j(doc) "
        f"CROSS JOIN LATERAL jsonb_to_record(j.doc) AS r({', '.join(record)})), "
        f"updated AS (UPDATE {table} AS t SET {', '.join(assignments)}, {quote('updated_at')} = now() "
        f"FROM s WHERE t.{key} = s.{key} RETURNING 1), "
        f"inserted AS (INSERT INTO {table} ({', '.join(columns)}, {sync_column}, {quote('created_at')}, "
        f"{quote('updated_at')}) SELECT {', '.join(values)}, s.sync, now(), now() FROM s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = s.{key}) "
        f"ON CONFLICT ({key}) DO NOTHING RETURNING 1) "
        f"SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted)"
    )
    return statement, (*assignment_params, *value_params)


def _sync_hold_open(sync: RecipientSync) -> None:
    """Inside the upload's transaction: holds the sync FOR SHARE, so that ``recipient_sync_finish``
    (which locks it FOR UPDATE) waits for this upload to commit and so sees whom it listed; and
    refuses the upload if the sync finished while it was on its way."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT finished_at FROM {connection.ops.quote_name(RecipientSync._meta.db_table)} WHERE id = %s FOR SHARE",
            [sync.pk],
        )
        found = cursor.fetchone()
    if found is None or found[0] is not None:
        raise ApplicationError(f"Sync {sync.pk} is finished; start a new one.", code="invalid_state", status=409)


def _sync_list_only(*, sync: RecipientSync, external_ids: list[str]) -> None:
    """Marks these existing people as listed by the sync, changing nothing else of theirs."""
    meta, quote = Recipient._meta, connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {quote(meta.get_field('last_sync').column)} = %s "
            f"WHERE {quote(meta.get_field('external_id').column)} = ANY(%s::text[])",
            [sync.pk, external_ids],
        )


ENTRA_DISABLED = "Not changed: the person's account is disabled in Entra ID; enable it there to make them active."
ENTRA_OWNS = "Not changed: Entra ID owns this field for this person (ENTRA_SYNC_FIELDS); change it in Entra ID."


def _entra_owned_values(external_ids: list[str], owned: set[str]) -> dict[str, dict[str, Any]]:
    """The fields Entra ID owns, as they are now, of the people among these whom Entra ID knows."""
    if not owned:
        return {}
    columns = ["external_id", "attributes", "inactive_from_entra",
               *sorted(name for name in owned if not name.startswith("attributes."))]
    # Locked (in the order the upload itself locks people), so that a sync page cannot write between this
    # read and the upload's write, and be overwritten with what was read.
    people = (Recipient.objects.select_for_update().filter(external_id__in=external_ids, entra_managed=True)
              .order_by("external_id").values(*columns))
    return {person["external_id"]: person for person in people}


def _changes_entra_owned(row: dict[str, Any], current: dict[str, Any] | None, owned: set[str]) -> list[str]:
    """The fields Entra ID owns that the row would change (``attributes.<key>`` for an attribute)."""
    if current is None:
        return []
    changed = ["is_active"] if current["inactive_from_entra"] and row.get("is_active") is True else []
    for name in sorted(owned):
        if name.startswith("attributes."):
            key = name.removeprefix("attributes.")
            if "attributes" in row and (row["attributes"] or {}).get(key) != (current["attributes"] or {}).get(key):
                changed.append(name)
        elif name in row and str(row[name] or "") != str(current[name] or ""):
            changed.append(name)
    return changed


def _keep_entra_owned(
    indexed: list[tuple[int, dict[str, Any]]], owned: set[str], result: UpsertResult
) -> list[dict[str, Any]]:
    """The rows, each without the changes to what Entra ID owns (listed in ``result.ignored``); inside the
    upload's transaction."""
    current = _entra_owned_values([row["external_id"] for _, row in indexed], owned)
    rows = []
    for index, row in indexed:
        for name in _changes_entra_owned(row, current.get(row["external_id"]), owned):
            message = ENTRA_DISABLED if name == "is_active" else ENTRA_OWNS
            result.ignored.append({"index": index, "field": name, "message": message})
            row = _without_entra_owned(row, name, current[row["external_id"]])
        rows.append(row)
    return rows


def _without_entra_owned(row: dict[str, Any], name: str, current: dict[str, Any]) -> dict[str, Any]:
    """The row, with the field Entra ID owns left as it is (an owned attribute keeps its current value; a
    person whose account Entra ID disabled stays inactive)."""
    if not name.startswith("attributes."):
        return {key: value for key, value in row.items() if key != name}
    key, attributes = name.removeprefix("attributes."), dict(row["attributes"] or {})
    if key in (current["attributes"] or {}):
        attributes[key] = current["attributes"][key]
    else:
        attributes.pop(key, None)
    return {**row, "attributes": attributes}


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Fields of saved rows left as they were, because Entra ID owns them.
    ignored: list[dict[str, Any]] = field(default_factory=list)


def recipients_bulk_upsert(
    *, rows: list[dict[str, Any]], sync: RecipientSync | None = None, also_listed: list[str] | tuple[str, ...] = ()
) -> UpsertResult:
    """Creates or updates people by ``external_id`` in one statement. A row changes only the fields
    it names: a field left out stays as it is (a new person gets its empty value), and null clears
    it. A row whose Entra object id already belongs to
    someone else is reported (with its index) and the others are still saved. With ``sync``, the
    people are marked as listed by that full sync, and so are the existing people of the rows
    refused (``also_listed``, and those refused here), with nothing else of theirs changed: a full
    sync deactivates nobody for a typo in one field."""
    if sync is not None and sync.finished_at is not None:
        raise ApplicationError(f"Sync {sync.pk} is finished; start a new one.", code="invalid_state", status=409)
    result = UpsertResult()
    external_ids = [row["external_id"] for row in rows]
    aad_ids = [row["aad_object_id"] for row in rows if row.get("aad_object_id")]
    owners = dict(_by_column("aad_object_id", aad_ids, "external_id")) if aad_ids else {}
    indexed: list[tuple[int, dict[str, Any]]] = []  # the rows not refused, with their index in ``rows``
    valid: list[dict[str, Any]] = []
    refused = set(also_listed)
    owned = owned_fields()
    for index, row in enumerate(rows):
        aad = row.get("aad_object_id")
        if aad and owners.get(aad, row["external_id"]) != row["external_id"]:
            result.errors.append(
                {"index": index, "field": "aad_object_id", "message": f"Already used by recipient {owners[aad]!r}."}
            )
            refused.add(row["external_id"])
            continue
        indexed.append((index, row))
    try:
        with transaction.atomic():
            if sync is not None:
                _sync_hold_open(sync)
            before = dict(_by_column("external_id", external_ids, "is_active"))
            valid = _keep_entra_owned(indexed, owned, result)
            if valid:
                statement, params = _upsert_statement(with_sync=sync is not None)
                # In external_id order, so that uploads of the same people take their locks in the same
                # order and wait for each other instead of deadlocking.
                ordered = sorted(valid, key=lambda row: row["external_id"])
                rows_json = json.dumps(
                    [{"external_id": row["external_id"], **{k: row[k] for k in RECIPIENT_FIELDS if k in row}} for row in ordered],
                    default=str,  # UUIDs and dates, as PostgreSQL reads them
                )
                with connection.cursor() as cursor:
                    cursor.execute(statement, [sync.pk if sync is not None else None, rows_json, *params])
                    updated, inserted = cursor.fetchone()
                if updated + inserted != len(valid):
                    raise IntegrityError("people created by another upload meanwhile")
            if sync is not None and refused:
                _sync_list_only(sync=sync, external_ids=sorted(refused))
    except (IntegrityError, OperationalError) as exc:
        # Another upload created these people or gave one of these Entra object ids to someone else in
        # the meantime, or the database chose this upload to lose a deadlock.
        if isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) not in RETRYABLE_SQLSTATES:
            raise
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
    """Deactivates everyone active whom the sync did not list, of the people HR brought (those Entra ID
    brought are its own sync's to end); with ``dry_run``, only counts them. A sync that listed nobody is
    refused: it would deactivate everyone."""
    with transaction.atomic():
        sync = RecipientSync.objects.select_for_update().get(pk=sync.pk)
        if sync.finished_at is not None:
            raise ApplicationError(f"Sync {sync.pk} is already finished.", code="invalid_state", status=409)
        listed = Recipient.objects.filter(last_sync=sync).count()
        if listed == 0:
            raise ApplicationError(
                "This sync listed nobody, so finishing it would deactivate everyone; upload the people first.",
                code="empty_sync",
                status=409,
            )
        leavers = Recipient.objects.filter(is_active=True, origin=Recipient.Origin.HR).exclude(last_sync=sync)
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




# --- Changing a campaign not sent yet ------------------------------------------------------------


def campaign_require_editable(campaign: Campaign) -> None:
    """Only a draft or a scheduled campaign can be changed (a conflict otherwise)."""
    move_require(campaign, "edit")


@dataclass(frozen=True)
class CampaignUpdate:
    campaign: Campaign
    changed: frozenset[str]  # the fields whose value changed
    approval_withdrawn: bool


def campaign_update(*, campaign_id: int, changes: dict[str, Any], actor: Actor) -> CampaignUpdate:
    """Changes a campaign not sent yet, for the admin and the API alike. Its row is locked, so a
    launch cannot slip in between; a campaign no longer a draft or scheduled is refused. A change of
    what an approval covers (its template, audience or category) withdraws the approval and, made by
    a staff member, is recorded as theirs: nobody approves their own change."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("category").get(pk=campaign_id)
        campaign_require_editable(campaign)
        changed = frozenset(name for name, value in changes.items() if getattr(campaign, name) != value)
        for name in changed:
            setattr(campaign, name, changes[name])
        fields = set(changed)
        covered = sorted(name for name in changed if name in APPROVED_FIELDS)
        if covered and actor.user is not None:
            campaign.edited_by = actor.user
            fields.add("edited_by")
            change_record(user=actor.user, obj=campaign, summary=f"Changed the {', '.join(covered)} of “{campaign}”")
        campaign.save(update_fields=[*sorted(fields), "updated_at"])
        withdrawn = bool(covered) and approval_withdraw(campaign=campaign, actor=actor, reason="it was changed")
    return CampaignUpdate(campaign=campaign, changed=changed, approval_withdrawn=withdrawn)
