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
from django.utils import timezone

from bots.graph import GraphClient, GraphError, graph
from core.errors import ApplicationError

from .attributes import attributes_problem_list
from .entra_fields import FieldMap, converted_value, field_maps, graph_value
from .models import DirectorySync, Recipient

logger = logging.getLogger(__name__)
# The advisory lock held while a run goes: one run at a time, whoever starts it.
ENTRA_SYNC_LOCK = 0x656E7472
def _select(maps: list[FieldMap]) -> str:
    tops = dict.fromkeys(["id", "accountEnabled", "userType", settings.ENTRA_SYNC_EXTERNAL_ID,
                          *(item.top for item in maps)])
    return ",".join(name for name in tops if name)


def _hr_id(user: dict[str, Any]) -> str:
    """The HR system's id Entra ID holds for the person (``ENTRA_SYNC_EXTERNAL_ID``), or ""."""
    return str(user.get(settings.ENTRA_SYNC_EXTERNAL_ID) or "").strip()


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
        self.listed: set[uuid.UUID] = set()  # everyone a full run saw

    def page(self, users: list[Any]) -> None:
        ids = {}
        for user in users:
            try:
                ids[str(user["id"])] = uuid.UUID(str(user["id"]))
            except (KeyError, TypeError, ValueError):
                self.counts.problems.append(f"Graph listed a user without a valid id: {str(user)[:80]}")
        with transaction.atomic():
            # Locked for the page's transaction, so an HR upload of the same people waits rather than
            # overwriting (or being overwritten) from a copy read before; in external id order, as an upload
            # locks them, so the two wait for each other rather than deadlock.
            people = (Recipient.objects.select_for_update().filter(aad_object_id__in=ids.values())
                      .order_by("external_id"))
            known = {person.aad_object_id: person for person in people}
            for user in users:
                object_id = ids.get(str(user.get("id")) if isinstance(user, dict) else "")
                if object_id is None:
                    continue
                self.counts.seen += 1
                self.listed.add(object_id)
                self._one(user, object_id, known.get(object_id))
            if self.run.dry_run:
                transaction.set_rollback(True)
        self.counts.pages += 1

    def _one(self, user: dict[str, Any], object_id: uuid.UUID, person: Recipient | None) -> None:
        counts, who = self.counts, str(object_id)
        if "@removed" in user:
            self._end(person)
            return
        if not user_type_taken(user.get("userType")):
            # A guest (or another kind of account the organisation does not message): never taken; ended if
            # the sync took them before or the account is disabled; and no longer Entra ID's to keep.
            if person is not None and person.is_active and (person.origin == Recipient.Origin.ENTRA
                                                            or user.get("accountEnabled") is False):
                self._end(person)
            else:
                counts.skipped += 1
            if person is not None and person.entra_managed:
                Recipient.objects.filter(pk=person.pk).update(entra_managed=False)
            return
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
                return
            self._create(user, object_id, values)
            return
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
            return
        if "attributes" in changed and (problems := attributes_problem_list(changed["attributes"])):
            counts.problems.append(f"{who}: attributes not taken: {'; '.join(problems)[:200]}")
            del changed["attributes"]
            if not changed:
                counts.unchanged += 1
                return
        Recipient.objects.filter(pk=person.pk).update(**changed, updated_at=timezone.now())
        if set(changed) - {"is_active", "inactive_from_entra", "entra_managed"}:
            counts.updated += 1
        elif "is_active" not in changed:  # only the sync's own marks changed: the person did not
            counts.unchanged += 1

    def _end(self, person: Recipient | None) -> None:
        """A removed account, or one the organisation does not message: its person inactive, never deleted."""
        if person is not None and person.is_active:
            Recipient.objects.filter(pk=person.pk).update(
                is_active=False, inactive_from_entra=True, updated_at=timezone.now()
            )
            self.counts.deactivated += 1
        else:
            self.counts.unchanged += 1

    def _matched_by_hr_id(self, user: dict[str, Any], object_id: uuid.UUID) -> Recipient | None:
        """A person HR created with this HR id and no Entra object id yet."""
        hr_id = _hr_id(user)
        if not hr_id:
            return None
        person = Recipient.objects.filter(external_id=hr_id).first()
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

    def _create(self, user: dict[str, Any], object_id: uuid.UUID, values: dict[str, Any]) -> None:
        hr_id = _hr_id(user)[:255] or f"entra:{object_id}"
        if Recipient.objects.filter(external_id=hr_id).exists():
            self.counts.problems.append(f"{object_id}: external id {hr_id!r} is taken by another person; not created")
            return
        plain = {name: value for name, value in values.items() if not name.startswith("attributes.")}
        attributes = {name.removeprefix("attributes."): value for name, value in values.items()
                      if name.startswith("attributes.") and value != ""}
        if problems := attributes_problem_list(attributes):
            self.counts.problems.append(f"{object_id}: attributes not taken: {'; '.join(problems)[:200]}")
            attributes = {}
        Recipient.objects.create(
            external_id=hr_id, aad_object_id=object_id, tenant_id=organisation_tenant(), origin=Recipient.Origin.ENTRA,
            entra_managed=True, attributes=attributes, **plain,
        )
        self.counts.created += 1

    def deactivate_unlisted(self) -> None:
        """After a full run: the people Entra ID brought that it no longer lists."""
        if not self.listed:
            self.counts.problems.append("Graph listed nobody: nobody was made inactive.")
            return
        ours = Recipient.objects.filter(origin=Recipient.Origin.ENTRA, is_active=True)
        gone = ours.exclude(aad_object_id__in=self.listed)
        if self.run.dry_run:
            self.counts.deactivated += gone.count()
        else:
            self.counts.deactivated += gone.update(is_active=False, inactive_from_entra=True, updated_at=timezone.now())

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


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _authority_tenant() -> str:
    """The tenant ``GRAPH_AUTHORITY`` names (its path's first part), or "" when it names none."""
    try:
        return urlsplit(settings.GRAPH_AUTHORITY or "").path.strip("/").split("/")[0].lower()
    except ValueError:  # not a URL at all
        return ""


def organisation_tenant() -> str:
    """The organisation's tenant id: ``BOT_TENANT_ID``, else the one ``GRAPH_AUTHORITY`` names."""
    return settings.BOT_TENANT_ID or _authority_tenant()


def user_type_taken(user_type: Any) -> bool:
    """Whether an account of this ``userType`` is a person to message (no type said: yes)."""
    return not user_type or str(user_type).lower() in {kind.lower() for kind in settings.ENTRA_SYNC_USER_TYPES}


def fingerprint(maps: list[FieldMap]) -> str:
    """What a delta link was asked for and what its answers were taken as: when any of it changes, the next
    run lists everyone again."""
    mapped = ",".join(f"{item.field}={'.'.join(item.path)}" for item in maps)
    kinds = ",".join(sorted(kind.lower() for kind in settings.ENTRA_SYNC_USER_TYPES))
    return f"{_select(maps)}|{mapped}|{kinds}|{settings.ENTRA_SYNC_EXTERNAL_ID}"


def configuration_require() -> list[FieldMap]:
    """The field map, or ``ApplicationError`` for a configuration a run cannot work with, saying what to set."""
    if not [kind for kind in settings.ENTRA_SYNC_USER_TYPES if kind.strip()]:
        raise ApplicationError("ENTRA_SYNC_USER_TYPES is empty: name the kinds of account to take, such as Member.",
                               code="not_configured", status=409)
    if _authority_tenant() in ("", "botframework.com", "common", "organizations"):
        raise ApplicationError(
            "Set GRAPH_AUTHORITY to your organisation's tenant (https://login.microsoftonline.com/<tenant id>), or "
            "BOT_TENANT_ID for a single-tenant bot: Graph's tokens never come from botframework.com.",
            code="not_configured", status=409,
        )
    return field_maps()


def sync_require() -> list[FieldMap]:
    """The field map, or ``ApplicationError`` when the sync is off or not configured."""
    if not settings.ENTRA_SYNC:
        raise ApplicationError(
            "The sync from Entra ID is off: set ENTRA_SYNC=true (docs/going-live.md).", code="sync_off", status=409
        )
    return configuration_require()


def _locked() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ENTRA_SYNC_LOCK])
        return bool(cursor.fetchone()[0])


def _unlock() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [ENTRA_SYNC_LOCK])


def entra_sync(*, full: bool = False, dry_run: bool = False, client: GraphClient = graph) -> DirectorySync:
    """One run (see the module's docstring); returns it, succeeded or failed with its reason in plain words.
    Refuses (``ApplicationError``) when the sync is off, not configured, or already running."""
    maps = sync_require()
    if connection.in_atomic_block:
        raise ApplicationError("A sync commits a page at a time: start it outside a transaction.", status=500)
    if not _locked():
        raise ApplicationError("A sync from Entra ID is already running.", code="sync_running", status=409)
    try:
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
    finally:
        _unlock()


def _go(run: DirectorySync, maps: list[FieldMap], client: GraphClient, delta_link: str | None) -> None:
    full_url = client.url("/users/delta", {"$select": _select(maps)})
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
