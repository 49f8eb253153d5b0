"""The members of an audience's Entra ID group or Teams team, listed into ``MemberListing``: a look for the
audience editor and approvals, or, at a launch, the people the campaign is sent to (its snapshot: whoever
joins the group later is not sent to, and the campaign's rows are written from the listing, not from the
group as it is then).

A listing is written a page at a time; the people Crier knows are recorded, the others counted with a
sample, so nobody in the group is dropped without a word. A team's roster also tells Crier each member's
Teams id, which lets the bot, being in the team, start a chat with them. One run lists one listing at a
time (an advisory lock); a run started again lists again from the start."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from bots.addresses import addresses_learn
from bots.graph import graph_interactive
from bots.members import ListingError, MemberPage, group_get, group_member_pages, team_member_pages
from bots.models import TeamsTeam
from core.locks import advisory_lock, advisory_lock_held

from .models import Audience, Campaign, ListedMember, MemberListing, Recipient
from .sources import group_id_normal

logger = logging.getLogger(__name__)

LISTING_LOCK = 0x6C697374  # the advisory lock's first key; the second is the listing's id
UNKNOWN_SAMPLE = 20


def listing_start(*, audience: Audience, campaign: Campaign | None = None) -> MemberListing:
    """A new listing of the audience's group or team (the caller runs it: ``listing_run``)."""
    return MemberListing.objects.create(
        audience=audience, campaign=campaign, kind=audience.kind, source_id=audience.source_id,
        source_name=audience.source_name,
    )


def listing_again(previous: MemberListing) -> MemberListing:
    """A new listing of the same group or team as ``previous``, for the same campaign: a launch's listing that
    failed is done again as it was launched, whatever its audience became since."""
    return MemberListing.objects.create(
        audience_id=previous.audience_id, campaign_id=previous.campaign_id, kind=previous.kind,
        source_id=previous.source_id, source_name=previous.source_name,
    )


def latest_listing(*, audience: Audience, succeeded: bool = True) -> MemberListing | None:
    """The audience's latest listing of its group or team as it is named now (a look or a launch's)."""
    listings = MemberListing.objects.filter(audience=audience, kind=audience.kind, source_id=audience.source_id)
    if succeeded:
        listings = listings.filter(status=MemberListing.Status.SUCCEEDED)
    return listings.order_by("-id").first()


def campaign_listing(*, campaign: Campaign) -> MemberListing | None:
    """The listing a campaign's launch made: the people it is sent to."""
    return MemberListing.objects.filter(campaign=campaign).order_by("-id").first()


def listed(listing_id: int | None) -> Exists | None:
    """Condition on a person: the listing found them (None: nobody is listed)."""
    if listing_id is None:
        return None
    return Exists(ListedMember.objects.filter(listing_id=listing_id, recipient_id=OuterRef("pk")))


def listed_people(listing: MemberListing) -> QuerySet[Recipient]:
    return Recipient.objects.filter(listed(listing.pk))


def listing_run(*, listing_id: int) -> MemberListing | None:
    """Lists the members into the listing and ends it succeeded or failed (in plain words). Returns the
    listing, or None when another run holds it."""
    with advisory_lock(LISTING_LOCK, listing_id) as held:
        if not held:
            return None
        listing = MemberListing.objects.select_related("audience").get(pk=listing_id)
        if listing.status == MemberListing.Status.RUNNING:
            _run(listing)
        return listing


def listing_stalled(listing: MemberListing) -> bool:
    """A listing under way for longer than a task waits in a queue, that no run holds: its task was lost."""
    young = listing.started_at >= timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS * 4)
    return listing.status == MemberListing.Status.RUNNING and not young and not listing_held(listing.pk)


def listing_held(listing_id: int) -> bool:
    """Whether a run holds the listing now."""
    return advisory_lock_held(LISTING_LOCK, listing_id)


def _pages(listing: MemberListing) -> Iterator[MemberPage]:
    if listing.kind == Audience.Kind.ENTRA_GROUP:
        group = group_get(listing.source_id)
        if group.name and group.name != listing.source_name:
            listing.source_name = group.name
            listing.save(update_fields=["source_name"])
        return group_member_pages(listing.source_id)
    team = TeamsTeam.objects.filter(team_id=listing.source_id).first()
    if team is None:
        raise ListingError("Crier's bot was never added to this team: add the app to the team in Teams first.")
    if not team.installed:
        raise ListingError(f"Crier's bot was removed from the team “{team}”: add the app to the team again.")
    if team.name and team.name != listing.source_name:
        listing.source_name = team.name
        listing.save(update_fields=["source_name"])
    return team_member_pages(team)


def _run(listing: MemberListing) -> None:
    ListedMember.objects.filter(listing=listing).delete()  # a run started again lists from the start
    listing.pages = listing.listed = listing.matched = listing.unknown = 0
    listing.unknown_sample = []
    team = TeamsTeam.objects.filter(team_id=listing.source_id).first() if listing.kind == Audience.Kind.TEAM else None
    try:
        for page in _pages(listing):
            _page_write(listing, page, team)
    except ListingError as error:
        _end(listing, MemberListing.Status.FAILED, str(error))
        logger.info("member listing %s failed: %s", listing.pk, error)
        return
    except Exception as error:  # a bug, or the database: the listing still ends, saying why
        logger.exception("member listing %s failed", listing.pk)
        _end(listing, MemberListing.Status.FAILED,
             f"Crier could not list the members ({type(error).__name__}: {str(error)[:300]}); list them again.")
        return
    _end(listing, MemberListing.Status.SUCCEEDED, "")
    # Earlier looks of the audience are of no more use (a launch's own listing is kept with its campaign).
    MemberListing.objects.filter(audience_id=listing.audience_id, campaign__isnull=True, pk__lt=listing.pk).exclude(
        status=MemberListing.Status.RUNNING).delete()


def _page_write(listing: MemberListing, page: MemberPage, team: TeamsTeam | None) -> None:
    by_id: dict[uuid.UUID, str] = {}
    unknown: list[str] = []
    for member in page.members:
        try:
            by_id[uuid.UUID(member.aad_object_id)] = member.name
        except ValueError:  # Teams gave no Entra object id (or not one): nobody Crier can know
            unknown.append(member.name or member.user_id[:60] or member.aad_object_id[:60] or "a member without an id")
    with transaction.atomic():
        known = dict(Recipient.objects.filter(aad_object_id__in=list(by_id)).values_list("aad_object_id", "id"))
        ListedMember.objects.bulk_create(
            [ListedMember(listing=listing, recipient_id=pk) for pk in known.values()], ignore_conflicts=True
        )
        unknown += [f"{name} ({object_id})" if name else str(object_id) for object_id, name in by_id.items() if object_id not in known]
        if team is not None:
            user_ids = {str(object_id): "" for object_id in by_id}
            for member in page.members:
                object_id = group_id_normal(member.aad_object_id)
                if object_id in user_ids and member.user_id:
                    user_ids[object_id] = member.user_id
            addresses_learn(
                members=[(object_id, user_id) for object_id, user_id in user_ids.items() if user_id],
                tenant_id=team.tenant_id, service_url=team.service_url,
            )
        listing.pages += 1
        listing.listed += len(page.members)
        listing.matched += len(known)
        listing.unknown += len(unknown)
        listing.unknown_sample = (listing.unknown_sample + unknown)[:UNKNOWN_SAMPLE]
        MemberListing.objects.filter(pk=listing.pk).update(
            pages=listing.pages, listed=listing.listed, matched=listing.matched, unknown=listing.unknown,
            unknown_sample=listing.unknown_sample,
        )


def _end(listing: MemberListing, status: str, error: str) -> None:
    listing.status, listing.error, listing.finished_at = status, error[:2000], timezone.now()
    fields = ["status", "error", "finished_at", "pages", "listed", "matched", "unknown", "unknown_sample"]
    MemberListing.objects.filter(pk=listing.pk).update(**{name: getattr(listing, name) for name in fields})


def listing_look(*, audience: Audience) -> MemberListing | None:
    """A new look at the members of a saved group or team audience, for the editor and approvals, listed by a
    task once the caller's transaction commits; or the look under way, if one is. None for another kind of
    audience."""
    if audience.kind not in Audience.LISTED_KINDS or not audience.source_id:
        return None
    under_way = MemberListing.objects.filter(
        audience=audience, campaign__isnull=True, status=MemberListing.Status.RUNNING,
        kind=audience.kind, source_id=audience.source_id,
    ).order_by("-id").first()
    if under_way is not None and not listing_stalled(under_way):
        return under_way
    if under_way is not None:
        _end(under_way, MemberListing.Status.FAILED, "It stopped before it finished (its task was lost).")
    listing = listing_start(audience=audience)
    transaction.on_commit(lambda: current_app.send_task(LIST_MEMBERS, args=(listing.pk,)))
    return listing


LIST_MEMBERS = "campaigns.tasks.list_members"


def listing_needs_look(*, audience: Audience) -> bool:
    """Whether the audience has no listing of its group or team as it is named now (none under way either)."""
    if audience.kind not in Audience.LISTED_KINDS:
        return False
    latest = latest_listing(audience=audience, succeeded=False)
    return latest is None or listing_stalled(latest)


@dataclass(frozen=True)
class Glance:
    """The first page of a group's or team's members, for an editor choosing it."""

    name: str
    members: list[str]  # Entra object ids, canonical
    more: bool  # more pages follow
    total: int | None  # how many members Entra ID says the group has


def source_glance(*, kind: str, source_id: str) -> Glance:
    """One page of the members of a group or team being chosen (raises ``ListingError``)."""
    if kind == Audience.Kind.ENTRA_GROUP:  # someone waits on the page: one retry and a short wait at most
        group = group_get(source_id, client=graph_interactive)
        pages = group_member_pages(source_id, client=graph_interactive)
        name = group.name
    else:
        team = TeamsTeam.objects.filter(team_id=source_id, installed=True).first()
        if team is None:
            raise ListingError("Crier's bot is not in this team: add the app to the team in Teams first.")
        pages, name = team_member_pages(team, attempts=1), team.name
    page = next(pages, None)
    if page is None:
        return Glance(name=name, members=[], more=False, total=0)
    members = [object_id for object_id in (group_id_normal(m.aad_object_id) for m in page.members) if object_id]
    return Glance(name=name, members=members, more=page.more, total=page.total)


def listing_text(listing: MemberListing | None) -> str:
    """A listing in words, for the admin: when, how many, who Crier does not know, or why it failed."""
    if listing is None:
        return "Not listed yet."
    if listing.status == MemberListing.Status.RUNNING:
        return f"Listing now: {listing.listed:,} members so far ({listing.pages:,} pages)."
    if listing.status == MemberListing.Status.FAILED:
        return f"The listing failed: {listing.error}"
    when = timezone.localtime(listing.finished_at).strftime("%d %b %Y %H:%M") if listing.finished_at else ""
    text = (f"Listed {when}: {listing.listed:,} members, of whom Crier knows {listing.matched:,} (its active people "
            "among them are sent to).")
    if listing.unknown:
        sample = "; ".join(listing.unknown_sample[:5])
        text += (f" {listing.unknown:,} are not among Crier's people (not synced from Entra ID or HR yet, or guests): "
                 f"{sample}{'…' if listing.unknown > 5 else ''}")
    return text


def listing_summary(*, audience: Audience) -> str:
    """The audience's latest listing in words, and the one under way if there is one."""
    done = latest_listing(audience=audience)
    latest = latest_listing(audience=audience, succeeded=False)
    if latest is not None and latest != done:
        return " ".join(part for part in (listing_text(done) if done else "", listing_text(latest)) if part)
    return listing_text(done)
