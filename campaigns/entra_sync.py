"""People from Entra ID, through Microsoft Graph's users delta query.

A run starts from the delta link the last successful run kept, or lists everyone (the first run, ``--full``,
or a delta link Graph no longer knows: it answers 410 and the run starts again in full). It follows every
page to the end; each page is applied in its own transaction and the run's progress is written after it, so
the admin shows a run while it goes. The delta link is kept only when the run succeeds, so a run that fails
halfway is simply done again from the same place next time (applying a page twice changes nothing).

What the sync writes, and what it never does:

* only the fields ``ENTRA_SYNC_FIELDS`` gives to Entra ID, from the Graph property each names (custom
  attributes too); a page lists only what changed, and a field Graph did not list is left as it is;
* a person Graph lists for the first time is created (origin Entra ID), with their HR id from
  ``ENTRA_SYNC_EXTERNAL_ID`` when Entra ID holds it; a person HR created with that id and no Entra object id
  yet is matched and given it;
* a removed or disabled account makes its person inactive; a person is never deleted (their history stays);
* an account enabled again makes active again only people the sync itself made inactive;
* a full run makes inactive the people Entra ID brought that it no longer lists (never HR's people).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from psycopg.types.json import Jsonb

from bots.graph import GraphClient, GraphError, graph
from core.errors import ApplicationError
from core.locks import advisory_lock

from .attributes import attributes_problem_list
from .entra_fields import (
    FieldMap,
    converted_value,
    fingerprint,
    graph_select,
    graph_value,
    hr_id_of,
    organisation_tenant,
    sync_require,
    user_type_taken,
)
from .models import DirectorySync, Recipient

logger = logging.getLogger(__name__)
# The advisory lock (with 0) held while a run goes: one run at a time, whoever starts it.
ENTRA_SYNC_LOCK = 0x656E7472
# Who a full run listed, kept by PostgreSQL for the run's connection only: gone if the connection is (the run
# then fails, and deactivates nobody).
SEEN = "crier_entra_seen"


@dataclass
class Counts:
    pages: int = 0
    seen: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    unchanged: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def saved(self, run: DirectorySync) -> None:
        values = {name: getattr(self, name) for name in
                  ("pages", "seen", "created", "updated", "deactivated", "reactivated", "unchanged", "skipped")}
        DirectorySync.objects.filter(pk=run.pk).update(**values, problems=self.problems[:100])
        for name, value in values.items():
            setattr(run, name, value)
        run.problems = self.problems[:100]


class _Run:
    def __init__(self, run: DirectorySync, maps: list[FieldMap], client: GraphClient) -> None:
        self.run, self.maps, self.client = run, maps, client
        self.counts = Counts()
        self.listed = 0  # people a full run saw, each kept in SEEN (a table of the run's session), not in memory
        self._seen_ready = False
        # What a page changes, written together when the page ends: new people, and the people changed,
        # by the fields they changed (each group one statement, writing only those fields).
        self._new: list[Recipient] = []
        self._changed: dict[frozenset[str], dict[int, Recipient]] = {}
        self._hr_ids: dict[str, Recipient | None] = {}  # the page's HR ids: their person, or None if free
        self._now = timezone.now()

    def page(self, users: list[Any]) -> None:
        ids = {}
        for user in users:
            try:
                ids[str(user["id"])] = uuid.UUID(str(user["id"]))
            except (KeyError, TypeError, ValueError):
                self.counts.problems.append(f"Graph listed a user without a valid id: {str(user)[:80]}")
        self._new, self._changed, self._now = [], {}, timezone.now()
        if self.run.full and not self._seen_ready:  # made here, inside the run's failure handling
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {SEEN} (aad uuid PRIMARY KEY)")
                cursor.execute(f"TRUNCATE {SEEN}")
            self._seen_ready = True
        # The HR ids the page's people would be matched by or created with if they were new.
        wanted = {hr_id_of(user)[:255] or f"entra:{object_id}" for user in users
                  if (object_id := ids.get(str(user.get("id")) if isinstance(user, dict) else "")) is not None
                  and "@removed" not in user}
        with transaction.atomic():
            # The page's people, by Entra object id or by those HR ids, in one query and locked for the page's
            # transaction, so an HR upload of the same people waits rather than overwriting (or being
            # overwritten) from a copy read before; in external id order, as an upload locks them, so the two
            # wait for each other rather than deadlock.
            people = list(Recipient.objects.select_for_update().filter(
                Q(aad_object_id__in=ids.values()) | Q(external_id__in=wanted)).order_by("external_id"))
            known = {person.aad_object_id: person for person in people if person.aad_object_id in set(ids.values())}
            self._hr_ids = dict.fromkeys(wanted)
            self._hr_ids.update({person.external_id: person for person in people if person.external_id in wanted})
            for user in users:
                object_id = ids.get(str(user.get("id")) if isinstance(user, dict) else "")
                if object_id is None:
                    continue
                self.counts.seen += 1
                person = self._one(user, object_id, known.get(object_id))
                if person is not None and person.aad_object_id == object_id:
                    known[object_id] = person  # listed twice in a page: the second sees what the first did
            self._write()
            if self.run.dry_run:
                transaction.set_rollback(True)
        if self.run.full and ids:  # outside the page's transaction: a dry run's pages roll back
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {SEEN} SELECT unnest(%s::uuid[]) ON CONFLICT DO NOTHING", [list(ids.values())])
                self.listed += cursor.rowcount
        self.counts.pages += 1

    def _write(self) -> None:
        """The page's new people in one COPY, and its changed people in one UPDATE per set of fields changed."""
        if self._new:
            # Every column but the id, from each person as made: COPY reads a page of rows at a time, where an
            # INSERT of them costs more to build than to run.
            columns = [field for field in Recipient._meta.concrete_fields if not field.primary_key]
            names = ", ".join(connection.ops.quote_name(field.column) for field in columns)
            with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(
                    f"COPY {Recipient._meta.db_table} ({names}) FROM STDIN") as copy:
                for person in self._new:
                    copy.write_row([
                        Jsonb(person.attributes) if field.column == "attributes" else getattr(person, field.attname)
                        for field in columns
                    ])
        for fields, people in self._changed.items():
            Recipient.objects.bulk_update(list(people.values()), [*fields, "updated_at"], batch_size=1000)

    def _save(self, person: Recipient, changed: dict[str, Any]) -> None:
        """Applies ``changed`` to the person, to be written when the page ends."""
        for name, value in changed.items():
            setattr(person, name, value)
        person.updated_at = self._now
        if person.pk is None:
            return  # made on this page: it is written as it is now
        fields = frozenset(changed)
        for group, people in list(self._changed.items()):  # changed twice in one page: one group with both
            if person.pk in people and group != fields:
                del people[person.pk]
                fields |= group
        self._changed.setdefault(fields, {})[person.pk] = person

    def _one(self, user: dict[str, Any], object_id: uuid.UUID, person: Recipient | None) -> Recipient | None:
        """Takes one listed user; returns their person as it now is (None: nobody)."""
        counts, who = self.counts, str(object_id)
        if "@removed" in user:
            self._end(person)
            return person
        if not user_type_taken(user.get("userType")):
            # A guest (or another kind of account the organisation does not message): never taken; ended if
            # the sync took them before or the account is disabled; and no longer Entra ID's to keep.
            if person is not None and person.is_active and (person.origin == Recipient.Origin.ENTRA
                                                            or user.get("accountEnabled") is False):
                self._end(person)
            else:
                counts.skipped += 1
            if person is not None and person.entra_managed:
                self._save(person, {"entra_managed": False})
            return person
        values: dict[str, Any] = {}
        for item in self.maps:
            listed, value = graph_value(user, item)
            if listed:
                usable, converted = converted_value(item, value, counts.problems, who)
                if usable:
                    values[item.field] = converted
        enabled = user.get("accountEnabled")
        if person is None:
            person = self._matched_by_hr_id(user, object_id)
        if person is None:
            if enabled is False:
                counts.skipped += 1  # a disabled account nobody knows of: nothing to make
                return None
            return self._create(user, object_id, values)
        changed = self._changes(person, values)
        if enabled is False and person.is_active:
            changed.update(is_active=False, inactive_from_entra=True)
            counts.deactivated += 1
        elif enabled is True and not person.is_active and person.inactive_from_entra:
            # Only whom the sync itself made inactive: whoever HR or a person made inactive stays so.
            changed.update(is_active=True, inactive_from_entra=False)
            counts.reactivated += 1
        if person.aad_object_id != object_id:
            changed["aad_object_id"] = object_id
        if not person.entra_managed:
            changed["entra_managed"] = True  # its owned fields are Entra ID's from now on
        if not changed:
            counts.unchanged += 1
            return person
        if "attributes" in changed and (problems := attributes_problem_list(changed["attributes"])):
            counts.problems.append(f"{who}: attributes not taken: {'; '.join(problems)[:200]}")
            del changed["attributes"]
            if not changed:
                counts.unchanged += 1
                return person
        self._save(person, changed)
        if set(changed) - {"is_active", "inactive_from_entra", "entra_managed"}:
            counts.updated += 1
        elif "is_active" not in changed:  # only the sync's own marks changed: the person did not
            counts.unchanged += 1
        return person

    def _end(self, person: Recipient | None) -> None:
        """A removed account, or one the organisation does not message: its person inactive, never deleted."""
        if person is not None and person.is_active:
            self._save(person, {"is_active": False, "inactive_from_entra": True})
            self.counts.deactivated += 1
        else:
            self.counts.unchanged += 1

    def _matched_by_hr_id(self, user: dict[str, Any], object_id: uuid.UUID) -> Recipient | None:
        """A person HR created with this HR id and no Entra object id yet (read with the page)."""
        hr_id = hr_id_of(user)
        if not hr_id:
            return None
        person = self._hr_ids.get(hr_id)
        if person is not None and person.aad_object_id not in (None, object_id):
            self.counts.problems.append(
                f"{object_id}: HR id {hr_id!r} belongs to a person with another Entra object id "
                f"({person.aad_object_id})"
            )
            return None
        return person

    @staticmethod
    def _changes(person: Recipient, values: dict[str, Any]) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        attributes = dict(person.attributes or {})
        for name, value in values.items():
            if name.startswith("attributes."):
                key = name.removeprefix("attributes.")
                if value == "":
                    attributes.pop(key, None)
                else:
                    attributes[key] = value
            elif getattr(person, name) != value:
                changed[name] = value
        if attributes != (person.attributes or {}):
            changed["attributes"] = attributes
        return changed

    def _create(self, user: dict[str, Any], object_id: uuid.UUID, values: dict[str, Any]) -> Recipient | None:
        hr_id = hr_id_of(user)[:255] or f"entra:{object_id}"
        if self._hr_ids.get(hr_id) is not None or (hr_id not in self._hr_ids and Recipient.objects.filter(
                external_id=hr_id).exists()):
            self.counts.problems.append(f"{object_id}: external id {hr_id!r} is taken by another person; not created")
            return None
        plain = {name: value for name, value in values.items() if not name.startswith("attributes.")}
        attributes = {name.removeprefix("attributes."): value for name, value in values.items()
                      if name.startswith("attributes.") and value != ""}
        if problems := attributes_problem_list(attributes):
            self.counts.problems.append(f"{object_id}: attributes not taken: {'; '.join(problems)[:200]}")
            attributes = {}
        person = Recipient(
            external_id=hr_id, aad_object_id=object_id, tenant_id=organisation_tenant(), origin=Recipient.Origin.ENTRA,
            entra_managed=True, attributes=attributes, created_at=self._now, updated_at=self._now, **plain,
        )
        self._new.append(person)
        self._hr_ids[hr_id] = person  # taken now, for the rest of the page
        self.counts.created += 1
        return person

    def deactivate_unlisted(self) -> None:
        """After a full run: the people Entra ID brought that it no longer lists."""
        if not self.listed:
            self.counts.problems.append("Graph listed nobody: nobody was made inactive.")
            return
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {SEEN}")  # so the planner knows how many it holds
        gone = unlisted_people()
        if self.run.dry_run:
            self.counts.deactivated += gone.count()
        else:
            self.counts.deactivated += gone.update(is_active=False, inactive_from_entra=True, updated_at=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {SEEN}")

    def follow(self, url: str) -> str:
        """Every page from ``url`` to the delta link, which it returns."""
        while True:
            data = self.client.get(url, needs="User.Read.All")
            self.page(data.get("value") or [])
            self.counts.saved(self.run)
            if data.get("@odata.nextLink"):
                url = str(data["@odata.nextLink"])
            elif data.get("@odata.deltaLink"):
                return str(data["@odata.deltaLink"])
            else:
                raise GraphError(status=200, code="NoDeltaLink", message="A page had no next link and no delta link.")


def unlisted_people():
    """The active people Entra ID brought whom a full run did not list (``SEEN``): ``NOT EXISTS``, which
    PostgreSQL runs as one anti-join however many were listed (``NOT IN`` a sub-query falls back to scanning
    the list for every person once it no longer fits in memory)."""
    table = Recipient._meta.db_table
    listed = RawSQL(f"EXISTS (SELECT 1 FROM {SEEN} AS seen WHERE seen.aad = {table}.aad_object_id)", [],
                    output_field=BooleanField())
    return Recipient.objects.filter(origin=Recipient.Origin.ENTRA, is_active=True).alias(listed=listed).filter(
        listed=False)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def entra_sync(*, full: bool = False, dry_run: bool = False, client: GraphClient = graph) -> DirectorySync:
    """One run (see the module's docstring); returns it, succeeded or failed with its reason in plain words.
    Refuses (``ApplicationError``) when the sync is off, not configured, or already running."""
    maps = sync_require()
    if connection.in_atomic_block:
        raise ApplicationError("A sync commits a page at a time: start it outside a transaction.", status=500)
    with advisory_lock(ENTRA_SYNC_LOCK, 0) as held:
        if not held:
            raise ApplicationError("A sync from Entra ID is already running.", code="sync_running", status=409)
        # A run still marked running holds no lock any more: its process ended before it finished.
        DirectorySync.objects.filter(status=DirectorySync.Status.RUNNING).update(
            status=DirectorySync.Status.FAILED, finished_at=timezone.now(),
            error="The run stopped before it finished (its process ended); this run took over.",
        )
        previous = (DirectorySync.objects.filter(status=DirectorySync.Status.SUCCEEDED, dry_run=False)
                    .exclude(delta_link="").first())
        selected = fingerprint(maps)
        # A delta link lists only what it was asked for, and only from the Graph it came from: after the
        # fields changed, or Graph's address did, everyone is listed again.
        full = (full or previous is None or previous.selected != selected
                or _origin(previous.delta_link) != _origin(settings.GRAPH_BASE_URL))
        run = DirectorySync.objects.create(full=full, dry_run=dry_run, selected=selected)
        _go(run, maps, client, None if full else previous.delta_link)
        return run


def _go(run: DirectorySync, maps: list[FieldMap], client: GraphClient, delta_link: str | None) -> None:
    full_url = client.url("/users/delta", {"$select": graph_select(maps)})
    work = _Run(run, maps, client)
    try:
        try:
            link = work.follow(delta_link or full_url)
        except GraphError as error:
            if error.status != 410 or run.full:
                raise
            logger.info("entra sync %s: the delta link expired (410); listing everyone", run.pk)
            run.full = True
            pages = work.counts.pages
            work = _Run(run, maps, client)
            work.counts.problems.append(f"The delta link had expired (Graph answered 410) after {pages} pages of "
                                        "changes; everyone was listed again.")
            link = work.follow(full_url)
        if run.full:
            work.deactivate_unlisted()
        run.status, run.delta_link = DirectorySync.Status.SUCCEEDED, "" if run.dry_run else link
    except GraphError as error:
        logger.warning("entra sync %s failed: %s", run.pk, error)
        run.status, run.error = DirectorySync.Status.FAILED, error.plain()
    except Exception as error:  # a bug or bad data: the run must still end, saying why
        logger.exception("entra sync %s failed", run.pk)
        run.status = DirectorySync.Status.FAILED
        run.error = f"Crier could not apply what Graph listed: {type(error).__name__}: {str(error)[:300]}"
    work.counts.saved(run)
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "delta_link", "full", "finished_at"])
