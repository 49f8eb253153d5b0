"""Reads: who an audience selects and whose opt-outs stop a message (a campaign's progress is
``delivery.progress``); what the audience editor shows (a live count and sample, suggested values)
and the people a CSV file names."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from bots.members import ListingError

from .members import campaign_listing, latest_listing, listed, source_glance
from .models import Audience, Campaign, MemberListing, Recipient
from .rules import rules_to_q
from .sources import group_id_normal

# --- Who an audience selects ----------------------------------------------------------------------


def _listed(through, audience_id: int) -> Exists:
    return Exists(through.objects.filter(audience_id=audience_id, recipient_id=OuterRef("pk")))


def _selection(
    *, kind: str, rules: list[dict[str, Any]], included: Q | Exists | None, excluded: Q | Exists | None,
    listed: Exists | None = None,
):
    """The active people of a kind, its rules and its include and exclude lists: a static list is its
    include list, rules (or a group's or team's ``listed`` members) select people on top of the include
    list, and the exclude list wins over everything. Set-based (``EXISTS``), so the engine can embed it
    in its ``INSERT … SELECT``."""
    people = Recipient.objects.filter(is_active=True)
    if kind == Audience.Kind.STATIC:
        people = people.filter(included) if included is not None else people.none()
    elif kind == Audience.Kind.RULES:
        selected = rules_to_q(rules)
        people = people.filter(selected | included if included is not None else selected)
    elif kind in Audience.LISTED_KINDS:
        chosen = [condition for condition in (listed, included) if condition is not None]
        people = people.filter(chosen[0] | chosen[1] if len(chosen) == 2 else chosen[0]) if chosen else people.none()
    if excluded is not None:
        people = people.exclude(excluded)
    return people


def audience_recipients(*, audience: Audience | None, listing: MemberListing | None = None) -> QuerySet[Recipient]:
    """The active people an audience selects right now (``None``: everyone active). A group's or team's
    are those of ``listing``, by default the audience's latest (``campaigns.members``)."""
    if audience is None:
        return Recipient.objects.filter(is_active=True)
    if audience.kind in Audience.LISTED_KINDS and listing is None and audience.pk is not None:
        listing = latest_listing(audience=audience)
    if audience.pk is None:
        return _selection(kind=audience.kind, rules=audience.rules or [], included=None, excluded=None)
    return _selection(
        kind=audience.kind,
        rules=audience.rules or [],
        included=_listed(Audience.members.through, audience.pk),
        excluded=_listed(Audience.excluded.through, audience.pk),
        listed=listed(listing.pk if listing is not None else None),
    )


def campaign_people_known(*, campaign: Campaign) -> bool:
    """Whether Crier knows whom the campaign is for: always, but for a group or team only once its launch's
    listing succeeded."""
    listing = campaign_listing(campaign=campaign)  # a launch to a group or team makes it in its own transaction
    return listing is None or listing.status == MemberListing.Status.SUCCEEDED


def campaign_recipients(*, campaign: Campaign) -> QuerySet[Recipient]:
    """The people a campaign's rows are written for: its audience's or, when its launch listed a group or
    team, the people listed then, whatever the audience was changed to since (none until it succeeded)."""
    listing = campaign_listing(campaign=campaign)
    if listing is None:
        return audience_recipients(audience=campaign.audience)
    if listing.status != MemberListing.Status.SUCCEEDED:
        return Recipient.objects.filter(listed(0))  # nobody (``none()`` would have no SQL to embed)
    return _selection(
        kind=listing.kind, rules=[],
        included=_listed(Audience.members.through, listing.audience_id),
        excluded=_listed(Audience.excluded.through, listing.audience_id),
        listed=listed(listing.pk),
    )


def audience_count(*, audience: Audience | None) -> int:
    return audience_recipients(audience=audience).count()


def campaign_same_name(*, name: str, exclude_id: int | None = None) -> Campaign | None:
    """Another campaign already called ``name`` (case and surrounding spaces aside): names need not be
    unique, but two alike are hard to tell apart in lists and reports."""
    others = Campaign.objects.filter(name__iexact=name.strip()).order_by("id")
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    return others.only("id", "name").first()


def opted_out_sql(*, recipient: str, mandatory: str, category: str) -> str:
    """SQL that is true when a person's opt-outs stop a message of a category: for a mandatory
    category only having blocked the bot does (Teams would refuse anyway); otherwise also an opt-out
    of everything or of that category. The arguments are SQL expressions (columns or placeholders);
    the engine embeds this in its set-based statements."""
    return f"EXISTS ({opted_out_people_sql(mandatory=mandatory, category=category)} AND o.recipient_id = {recipient})"


def opted_out_people_sql(*, mandatory: str, category: str) -> str:
    """SQL selecting (as ``o.recipient_id``, possibly twice) the people whose opt-outs stop a
    message of a category, by the same rule: for a set-based statement over many people."""
    return (
        "SELECT o.recipient_id FROM campaigns_optout o"
        f" WHERE (o.source = 'blocked' OR (NOT {mandatory} AND (o.category_id IS NULL OR o.category_id = {category})))"
    )


# --- The audience editor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AudiencePreview:
    count: int | None  # None when the definition is invalid, or its group is not listed yet
    sample: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""  # what the count stands on, for a group or team


def recipient_label(person: Recipient) -> str:
    """"First Last (Department)", as comms staff recognise a person."""
    name = f"{person.first_name} {person.last_name}".strip() or person.display_name or person.external_id
    return f"{name} ({person.department})" if person.department else name


def audience_preview(
    *,
    kind: str,
    rules: Any,
    member_ids: Iterable[int] | None,
    excluded_ids: Iterable[int] | None,
    audience_id: int | None = None,
    sample_size: int = 10,
    source_id: str = "",
) -> AudiencePreview:
    """How many people an audience definition that is being edited (not saved) selects, and the
    first few of them. A list given as ``None`` is the saved audience's own (``audience_id``), or
    empty for a new one. An invalid definition gives the validation messages ``Audience.clean``
    gives, and no count. A group or team is counted from the saved audience's latest listing of it or,
    newly chosen, from the first page of its members (``members_preview``)."""
    if kind not in Audience.Kind.values:
        return AudiencePreview(count=None, errors=[f"Choose a kind: {', '.join(Audience.Kind.values)}."])
    rules = rules if rules is not None else []
    source_id = source_id.strip() if kind in Audience.LISTED_KINDS else ""
    if kind == Audience.Kind.ENTRA_GROUP:
        source_id = group_id_normal(source_id) or source_id  # as it is saved
    try:
        Audience(kind=kind, rules=rules, source_id=source_id).clean()
    except ValidationError as exc:
        return AudiencePreview(count=None, errors=exc.messages)
    note, members, exact = "", None, True
    if kind in Audience.LISTED_KINDS:
        note, members, exact = members_preview(kind=kind, source_id=source_id, audience_id=audience_id)
        if members is None:
            return AudiencePreview(count=None, note=note)

    def condition(ids: Iterable[int] | None, through) -> Q | Exists | None:
        if ids is None:
            return _listed(through, audience_id) if audience_id else None
        ids = sorted(set(ids))
        return Q(pk__in=ids) if ids else None

    people = _selection(
        kind=kind,
        rules=rules,
        included=condition(member_ids, Audience.members.through),
        excluded=condition(excluded_ids, Audience.excluded.through),
        listed=members,
    )
    sample = people.order_by("id").only("first_name", "last_name", "display_name", "external_id", "department")
    return AudiencePreview(
        count=people.count() if exact else None, sample=[recipient_label(p) for p in sample[:sample_size]], note=note
    )


def members_preview(*, kind: str, source_id: str, audience_id: int | None) -> tuple[str, Q | Exists | None, bool]:
    """What the editor counts a group or team by, a note saying so, and whether the count is exact: the
    saved audience's latest listing when it names the same group or team; otherwise the first page of its
    members, exact when it is the only page (else it gives a sample only). No condition (None): nothing
    to count yet, and the note says why."""
    saved = Audience.objects.filter(pk=audience_id).first() if audience_id else None
    if saved is not None and saved.kind == kind and saved.source_id == source_id:
        latest = latest_listing(audience=saved, succeeded=False)
        done = latest if latest is not None and latest.status == MemberListing.Status.SUCCEEDED else latest_listing(audience=saved)
        if latest is not None and latest.status == MemberListing.Status.RUNNING:
            state = f"Listing its members now ({latest.listed:,} so far)"
        elif latest is not None and latest.status == MemberListing.Status.FAILED:
            state = f"The last listing failed: {latest.error}"
        else:
            state = ""
        if done is None:
            return state or "Not listed yet: saving lists its members.", None, False
        when = timezone.localtime(done.finished_at).strftime("%d %b %H:%M") if done.finished_at else ""
        unknown = f"; {done.unknown:,} of them are not among Crier's people" if done.unknown else ""
        counted = f"As listed {when}: {done.listed:,} members{unknown}."
        state = f"{state}." if state and not state.endswith(".") else state
        return " ".join(part for part in (counted, state) if part), listed(done.pk), True
    try:
        glance = source_glance(kind=kind, source_id=source_id)
    except ListingError as error:
        return str(error), None, False
    name = f"“{glance.name}”" if glance.name else "It"
    if glance.more:
        total = f"{glance.total:,} members" if glance.total is not None else "more than one page of members"
        note = f"{name} has {total}; a few of the first are shown. Saving lists them all and counts the people Crier knows."
        return note, Q(aad_object_id__in=glance.members), False
    return f"{name} has {len(glance.members):,} members; saving lists them again.", Q(aad_object_id__in=glance.members), True


SUGGESTED_FIELDS = ("department", "location", "country", "job_title")

# One pass over the active people: a count per value of each field (GROUPING SETS), ranked within
# each field, empty values last (and then dropped).
_TOP_VALUES = """
SELECT field, value FROM (
    SELECT {which} AS field, COALESCE({columns}) AS value,
           row_number() OVER (
               PARTITION BY {which} ORDER BY COALESCE({columns}) = '', count(*) DESC, COALESCE({columns})
           ) AS rank
      FROM {table}
     WHERE is_active
     GROUP BY GROUPING SETS ({sets})
) AS ranked
WHERE rank <= %s AND value <> ''
ORDER BY field, rank
"""


def recipient_field_values(*, limit: int = 50) -> dict[str, list[str]]:
    """The most common values of department, location, country and job title among active people,
    most common first, at most ``limit`` of each: what the rule editor suggests."""
    sql = _TOP_VALUES.format(
        which="CASE " + " ".join(f"WHEN GROUPING({f}) = 0 THEN '{f}'" for f in SUGGESTED_FIELDS) + " END",
        columns=", ".join(SUGGESTED_FIELDS),
        table=Recipient._meta.db_table,
        sets=", ".join(f"({f})" for f in SUGGESTED_FIELDS),
    )
    values: dict[str, list[str]] = {f: [] for f in SUGGESTED_FIELDS}
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        for name, value in cursor.fetchall():
            values[name].append(value)
    return values


# --- People named in a CSV file --------------------------------------------------------------------

PEOPLE_FILE_MAX_BYTES = 5 * 1024 * 1024
PEOPLE_FILE_MAX_ROWS = 100_000
PEOPLE_FILE_COLUMNS = ("external_id", "email")
_SHOWN_UNKNOWN = 20
_LOOKUP_BATCH = 5_000


@dataclass(frozen=True)
class PeopleFile:
    ids: list[int]  # the people found, each once
    rows: int  # the file's rows that named someone


def _decoded(data: bytes) -> str:
    if data.startswith(b"PK\x03\x04"):
        raise ValidationError("This is a spreadsheet, not a CSV file: save it as “CSV UTF-8” and upload that.")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")  # what spreadsheets save "CSV" as on Windows
    if "\x00" in text:
        raise ValidationError("This is not a CSV text file.")
    return text


def _column(cell: str) -> str:
    return cell.strip().lower().replace(" ", "_").replace("-", "_")


def _dialect(header_line: str) -> str:
    """The delimiter that makes the header name a column we read (comma, semicolon or tab)."""
    best, best_cells = None, 0
    for delimiter in (",", ";", "\t"):
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        if any(_column(cell) in PEOPLE_FILE_COLUMNS for cell in cells) and len(cells) > best_cells:
            best, best_cells = delimiter, len(cells)
    if best is None:
        found = ", ".join(c.strip() for c in header_line.split(",")[:6] if c.strip())[:120]
        raise ValidationError(
            "The file needs an external_id or email column, named in its first row"
            + (f" (its first row is: {found})." if found else ".")
        )
    return best


def recipients_from_csv(
    *, file: IO[bytes], max_bytes: int = PEOPLE_FILE_MAX_BYTES, max_rows: int = PEOPLE_FILE_MAX_ROWS
) -> PeopleFile:
    """The people a CSV file names, by ``external_id`` or ``email`` (the header row says which; a
    row with both is read by its external id). Every row must name somebody: otherwise the
    ValidationError lists the rows that match nobody, with their line numbers, so none is dropped
    silently. Accepts a byte-order mark, comma, semicolon or tab delimiters and blank lines."""
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValidationError(f"The file is larger than {max_bytes // (1024 * 1024)} MB: split it into smaller files.")
    text = _decoded(data)
    header_line = next((line for line in io.StringIO(text) if line.strip()), "")
    if not header_line:
        raise ValidationError("The file is empty.")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_dialect(header_line))
    wanted: list[tuple[int, str, str]] = []  # (line, column, value)
    try:
        header = None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines
            if header is None:
                header = {_column(cell): index for index, cell in enumerate(row)}
                continue
            if len(wanted) >= max_rows:
                raise ValidationError(f"The file has more than {max_rows:,} rows: split it into smaller files.")
            value, column = "", ""
            for column in PEOPLE_FILE_COLUMNS:
                index = header.get(column)
                value = row[index].strip() if index is not None and index < len(row) else ""
                if value:
                    break
            wanted.append((reader.line_num, column if value else "", value))
    except csv.Error as exc:
        raise ValidationError(f"Line {reader.line_num}: this is not valid CSV ({exc}).") from exc
    if not wanted:
        raise ValidationError("The file names nobody: it has a header row but no rows under it.")

    by_external_id = _ids_by(Recipient.objects.all(), "external_id", {v for _, c, v in wanted if c == "external_id"})
    by_email = _ids_by(
        Recipient.objects.annotate(email_lower=Lower("email")), "email_lower",
        {v.lower() for _, c, v in wanted if c == "email"},
    )
    found: set[int] = set()
    unknown: list[str] = []
    for line, column, value in wanted:
        ids = by_external_id.get(value) if column == "external_id" else by_email.get(value.lower()) if column else None
        if ids:
            found.update(ids)
        else:
            unknown.append(f"line {line}: {value}" if value else f"line {line}: no external_id or email")
    if unknown:
        shown = "; ".join(unknown[:_SHOWN_UNKNOWN])
        more = f"; and {len(unknown) - _SHOWN_UNKNOWN:,} more" if len(unknown) > _SHOWN_UNKNOWN else ""
        raise ValidationError(
            f"{len(unknown):,} row{'s' if len(unknown) != 1 else ''} of the file match nobody ({shown}{more}). "
            "Nothing was saved: correct or remove these rows and upload the file again."
        )
    return PeopleFile(ids=sorted(found), rows=len(wanted))


def _ids_by(people: QuerySet, column: str, values: set[str]) -> dict[str, list[int]]:
    """Recipient ids by the value of ``column`` (an email can belong to more than one record)."""
    ids: dict[str, list[int]] = {}
    ordered = sorted(values)
    for start in range(0, len(ordered), _LOOKUP_BATCH):
        batch = ordered[start:start + _LOOKUP_BATCH]
        for value, pk in people.filter(**{f"{column}__in": batch}).values_list(column, "pk"):
            ids.setdefault(value, []).append(pk)
    return ids
