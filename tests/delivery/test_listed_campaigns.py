"""A campaign to an Entra ID group or a team: listed at its launch, then written from that listing and
nothing else; a failed listing pauses it and a resume lists again; a group larger than the campaign may
reach sends it back to draft with nothing written; the reconciler restarts a listing nobody makes.

The group's pages here come from a stand-in for Graph (``campaigns.members._pages``); the listing against
the emulator's Graph and Teams is tested in tests/campaigns/test_member_listings.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from bots.members import ListingError, Member, MemberPage
from campaigns import members as listings
from campaigns.models import Audience, AuditEntry, Campaign, MemberListing, OptOut
from core.errors import ApplicationError
from delivery import jobs, listing, materialising, recovery, services
from tests import factories

pytestmark = pytest.mark.django_db

GROUP = "0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10"


class Directory:
    """The group's members as the stand-in for Graph lists them, two to a page; or a refusal."""

    def __init__(self) -> None:
        self.members: list[str] = []
        self.refusal: str | None = None
        self.calls = 0

    def pages(self, listing_row: MemberListing):
        self.calls += 1
        if self.refusal:
            raise ListingError(self.refusal)
        chunks = [self.members[i:i + 2] for i in range(0, len(self.members), 2)] or [[]]
        return iter(MemberPage([Member(aad_object_id=m, name=f"Member {m[:4]}") for m in chunk], more=i < len(chunks) - 1)
                    for i, chunk in enumerate(chunks))


@pytest.fixture
def directory(monkeypatch):
    found = Directory()
    monkeypatch.setattr(listings, "_pages", found.pages)
    return found


@pytest.fixture
def jobs_inline(monkeypatch):
    """The work a launch or resume queues, done at once, in order, and noted."""
    done: list[tuple] = []

    def list_members(campaign_id):
        done.append(("list", campaign_id))
        listing.campaign_members_list(campaign_id=campaign_id)

    def materialise(campaign_id, after):
        done.append(("materialise", campaign_id, after))
        materialising.campaign_materialise(campaign_id=campaign_id, after=after)

    monkeypatch.setattr(jobs, "list_members", list_members)
    monkeypatch.setattr(jobs, "materialise", materialise)
    monkeypatch.setattr(jobs, "feed", lambda: None)
    return done


def group_campaign(**fields) -> Campaign:
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP, source_name="Leeds office")
    return factories.campaign(audience=audience, **fields)


def launch(campaign, capture):
    with capture(execute=True):
        services.campaign_launch(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    return campaign


def people_sent_to(campaign) -> set[int]:
    return set(campaign.deliveries.values_list("recipient_id", flat=True))


def test_a_group_campaign_is_written_from_the_members_listed_at_its_launch(
    directory, jobs_inline, django_capture_on_commit_callbacks
):
    members = [factories.recipient() for _ in range(5)]
    outsider = factories.recipient()
    directory.members = [str(p.aad_object_id) for p in members] + [str(uuid.uuid4())]  # one Crier does not know
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)

    assert people_sent_to(campaign) == {p.pk for p in members}
    assert outsider.pk not in people_sent_to(campaign)
    assert [step[0] for step in jobs_inline] == ["list", "materialise"]
    row = MemberListing.objects.get(campaign=campaign)
    assert (row.status, row.listed, row.matched, row.unknown, row.pages) == ("succeeded", 6, 5, 1, 3)
    assert len(row.unknown_sample) == 1
    assert campaign.materialised_at is not None and campaign.total_deliveries == 5


def test_people_who_join_the_group_after_the_launch_are_not_sent_to(
    directory, jobs_inline, django_capture_on_commit_callbacks, monkeypatch
):
    first = factories.recipient()
    directory.members = [str(first.aad_object_id)]
    monkeypatch.setattr(jobs, "materialise", lambda campaign_id, after: None)  # written later
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    later = factories.recipient()
    directory.members.append(str(later.aad_object_id))  # joins the group once it was listed
    Audience.objects.filter(pk=campaign.audience_id).update(kind=Audience.Kind.EVERYONE, source_id="")  # even edited

    materialising.campaign_materialise(campaign_id=campaign.pk, after=0)

    assert people_sent_to(campaign) == {first.pk}


def test_opt_outs_inactive_people_and_the_exclude_list_hold_for_a_group_and_the_include_list_adds(
    directory, jobs_inline, django_capture_on_commit_callbacks
):
    kept, stopped, gone, excluded = (factories.recipient() for _ in range(4))
    gone.is_active = False
    gone.save()
    extra = factories.recipient()
    OptOut.objects.create(recipient=stopped, source=OptOut.Source.TYPED_STOP)
    directory.members = [str(p.aad_object_id) for p in (kept, stopped, gone, excluded)]
    campaign = group_campaign()
    campaign.audience.excluded.add(excluded)
    campaign.audience.members.add(extra)
    campaign = launch(campaign, django_capture_on_commit_callbacks)

    rows = dict(campaign.deliveries.values_list("recipient_id", "status"))
    assert rows == {kept.pk: "pending", stopped.pk: "skipped", extra.pk: "pending"}


def test_a_listing_that_fails_pauses_the_campaign_in_plain_words_and_a_resume_lists_again(
    directory, jobs_inline, django_capture_on_commit_callbacks
):
    person = factories.recipient()
    directory.members = [str(person.aad_object_id)]
    directory.refusal = "Entra ID has no group 0d5c…: it was deleted, or the id is wrong."
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)

    assert campaign.status == Campaign.Status.PAUSED
    assert "Could not list the members of the group “Leeds office”" in campaign.status_reason
    assert "it was deleted" in campaign.status_reason and "Resume it to list them again" in campaign.status_reason
    assert not campaign.deliveries.exists() and campaign.materialised_at is None

    directory.refusal = None
    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_resume(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert people_sent_to(campaign) == {person.pk}
    assert list(MemberListing.objects.filter(campaign=campaign).values_list("status", flat=True)) == ["succeeded", "failed"]


def test_a_group_larger_than_the_campaign_may_reach_sends_it_back_to_draft_with_nothing_written(
    directory, jobs_inline, django_capture_on_commit_callbacks, settings
):
    settings.APPROVAL_THRESHOLD = 3
    people = [factories.recipient() for _ in range(4)]
    directory.members = [str(p.aad_object_id) for p in people]
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)  # its look counted nobody yet

    assert campaign.status == Campaign.Status.DRAFT and campaign.launched_at is None
    assert "holds 4 people, more than 3 people, above which a campaign needs approval" in campaign.status_reason
    assert not campaign.deliveries.exists()
    # The listing now counts for the approval: the next launch needs it.
    with pytest.raises(ApplicationError, match="approve"):
        services.campaign_launch(campaign_id=campaign.pk)


def test_an_approved_campaign_whose_group_grew_past_its_approval_goes_back_to_draft_unapproved(
    directory, jobs_inline, django_capture_on_commit_callbacks, settings
):
    settings.APPROVAL_THRESHOLD = 1
    people = [factories.recipient() for _ in range(3)]
    campaign = group_campaign()
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(), approved_people=2)
    directory.members = [str(p.aad_object_id) for p in people[:2]]
    listings.listing_run(listing_id=listings.listing_start(audience=campaign.audience).pk)  # the look approved
    from campaigns.approvals import approval_fingerprint
    campaign.refresh_from_db()
    Campaign.objects.filter(pk=campaign.pk).update(approved_fingerprint=approval_fingerprint(campaign=campaign))
    directory.members = [str(p.aad_object_id) for p in people]  # grew by one before the launch's listing

    campaign = launch(campaign, django_capture_on_commit_callbacks)

    assert campaign.status == Campaign.Status.DRAFT and campaign.approved_at is None
    assert "holds 3 people, more than the 2 people it was approved for" in campaign.status_reason
    assert not campaign.deliveries.exists()


def test_the_reconciler_restarts_a_listing_nobody_is_making_and_never_writes_before_it(
    directory, jobs_inline, django_capture_on_commit_callbacks, monkeypatch, settings
):
    person = factories.recipient()
    directory.members = [str(person.aad_object_id)]
    lost: list[int] = []
    monkeypatch.setattr(jobs, "list_members", lost.append)  # the launch's task is lost
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    assert lost == [campaign.pk] and campaign.status == Campaign.Status.RUNNING
    Campaign.objects.filter(pk=campaign.pk).update(
        launched_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 1)
    )
    MemberListing.objects.filter(campaign=campaign).update(
        started_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 1)
    )
    written: list[tuple] = []
    monkeypatch.setattr(jobs, "materialise", lambda *args: written.append(args))

    assert recovery.reconcile()["materialisations_restarted"] == 1
    assert lost == [campaign.pk, campaign.pk] and written == []  # listed again, not written from nothing

    materialising.campaign_materialise(campaign_id=campaign.pk, after=0)  # a writing started too early
    campaign.refresh_from_db()
    assert campaign.materialised_at is None and not campaign.deliveries.exists()


def test_a_listing_under_way_is_left_to_its_task(directory, django_capture_on_commit_callbacks, monkeypatch, settings):
    factories.recipient()
    monkeypatch.setattr(jobs, "list_members", lambda campaign_id: None)
    started: list = []
    monkeypatch.setattr(jobs, "materialise", lambda *args: started.append(args))
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    Campaign.objects.filter(pk=campaign.pk).update(
        launched_at=timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 1)
    )  # its listing started a moment ago

    assert recovery.reconcile()["materialisations_restarted"] == 0
    assert started == []


def test_a_welcome_campaign_cannot_greet_a_group(directory):
    campaign = group_campaign(kind=Campaign.Kind.WELCOME)
    with pytest.raises(ApplicationError, match="welcome campaign") as refused:
        services.campaign_launch(campaign_id=campaign.pk)
    assert list(refused.value.fields) == ["audience"]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_the_audience_of_a_welcome_campaign_cannot_become_a_group():
    audience = factories.audience(kind=Audience.Kind.EVERYONE)
    factories.campaign(kind=Campaign.Kind.WELCOME, audience=audience, status=Campaign.Status.RUNNING)
    audience.kind, audience.source_id = Audience.Kind.ENTRA_GROUP, GROUP
    with pytest.raises(ValidationError) as refused:
        audience.clean()
    assert "welcome campaign" in refused.value.message_dict["kind"][0]


def test_after_going_back_to_draft_a_relaunch_to_another_audience_is_sent_to_that_audience(
    directory, jobs_inline, django_capture_on_commit_callbacks, settings
):
    settings.APPROVAL_THRESHOLD = 3
    leeds = [factories.recipient(department="Ops") for _ in range(4)]
    sales = [factories.recipient(department="Sales") for _ in range(2)]
    directory.members = [str(p.aad_object_id) for p in leeds]
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    assert campaign.status == Campaign.Status.DRAFT

    Campaign.objects.filter(pk=campaign.pk).update(audience=factories.audience(
        kind=Audience.Kind.RULES, rules=[{"field": "department", "op": "eq", "value": "Sales"}]))
    campaign = launch(campaign, django_capture_on_commit_callbacks)

    assert campaign.status == Campaign.Status.RUNNING and campaign.status_reason == ""
    assert people_sent_to(campaign) == {p.pk for p in sales}


def test_going_back_to_draft_is_in_the_audit_trail_approved_or_not(
    directory, jobs_inline, django_capture_on_commit_callbacks, settings
):
    settings.APPROVAL_THRESHOLD = 1
    directory.members = [str(factories.recipient().aad_object_id) for _ in range(2)]
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)

    entry = AuditEntry.objects.filter(campaign=campaign, action=AuditEntry.Action.UNLAUNCH).get()
    assert "holds 2 people" in entry.summary and entry.detail["people"] == 2 and entry.detail["limit"] == 1


def test_a_campaign_whose_audience_was_edited_after_a_failed_listing_lists_its_launchs_group_again(
    directory, jobs_inline, django_capture_on_commit_callbacks
):
    person = factories.recipient()
    directory.members = [str(person.aad_object_id)]
    directory.refusal = "Microsoft Graph could not be reached."
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    assert campaign.status == Campaign.Status.PAUSED
    Audience.objects.filter(pk=campaign.audience_id).update(kind=Audience.Kind.EVERYONE, source_id="")  # edited since
    factories.recipient()  # someone the edited audience would select

    directory.refusal = None
    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_resume(campaign_id=campaign.pk)
    campaign.refresh_from_db()

    assert people_sent_to(campaign) == {person.pk} and campaign.materialised_at is not None
    assert list(MemberListing.objects.filter(campaign=campaign).values_list("kind", "source_id")) == [
        ("entra_group", GROUP), ("entra_group", GROUP)]


def test_a_campaign_paused_while_its_group_was_listed_goes_back_to_draft_on_resume_if_it_outgrew(
    directory, jobs_inline, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.APPROVAL_THRESHOLD = 3
    directory.members = [str(factories.recipient().aad_object_id) for _ in range(5)]
    pages = directory.pages

    def paused_meanwhile(listing_row):
        services.campaign_pause(campaign_id=listing_row.campaign_id, reason="Paused by a person.")
        return pages(listing_row)

    monkeypatch.setattr(listings, "_pages", paused_meanwhile)
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    assert campaign.status == Campaign.Status.DRAFT and "holds 5 people" in campaign.status_reason
    assert not campaign.deliveries.exists()


def test_resuming_a_campaign_whose_listing_succeeded_while_paused_checks_its_reach_before_writing(
    directory, jobs_inline, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.APPROVAL_THRESHOLD = 3
    directory.members = [str(factories.recipient().aad_object_id) for _ in range(5)]
    held: list[int] = []
    monkeypatch.setattr(jobs, "list_members", held.append)
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    listings.listing_run(listing_id=MemberListing.objects.get(campaign=campaign).pk)  # listed; not decided yet
    services.campaign_pause(campaign_id=campaign.pk, reason="Paused by a person.")

    monkeypatch.setattr(jobs, "list_members", lambda campaign_id: listing.campaign_members_list(campaign_id=campaign_id))
    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_resume(campaign_id=campaign.pk)
    campaign.refresh_from_db()

    assert campaign.status == Campaign.Status.DRAFT and not campaign.deliveries.exists()


def test_one_task_decides_for_a_campaign_at_a_time(directory, django_capture_on_commit_callbacks, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(jobs, "list_members", lambda campaign_id: None)
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [listing.CAMPAIGN_LISTING_LOCK, campaign.pk])
        assert listing.campaign_members_list(campaign_id=campaign.pk) == "listed by another task"
        assert directory.calls == 0
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [listing.CAMPAIGN_LISTING_LOCK, campaign.pk])
    finally:
        other.close()


def test_a_listing_that_breaks_unexpectedly_ends_failed_and_pauses_its_campaign(
    directory, jobs_inline, django_capture_on_commit_callbacks, monkeypatch
):
    def broken(listing_row):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(listings, "_pages", broken)
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)

    row = MemberListing.objects.get(campaign=campaign)
    assert row.status == "failed" and "RuntimeError: the database went away" in row.error
    assert campaign.status == Campaign.Status.PAUSED and "the database went away" in campaign.status_reason


def _stalled(campaign, settings):
    """As the reconciler finds it: launched longer ago than its grace, its rows not all written."""
    old = timezone.now() - timedelta(seconds=settings.RETRY_GRACE_SECONDS + 1)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=old)
    MemberListing.objects.filter(campaign=campaign).update(started_at=old)


def test_the_reconciler_gives_each_stalled_campaign_what_it_waits_for(
    directory, django_capture_on_commit_callbacks, monkeypatch, settings
):
    """A listing under way is left alone and the campaigns after it still looked at; a lost or failed listing
    is made again; a listed campaign with no row yet is looked at by the listing task (its reach) before any
    row; one with rows, and any other campaign, is written on from its last person."""
    factories.recipient()
    queued: list[tuple] = []
    monkeypatch.setattr(jobs, "list_members", lambda campaign_id: queued.append(("list", campaign_id)))
    monkeypatch.setattr(jobs, "materialise", lambda campaign_id, after: queued.append(("write", campaign_id)))
    plain = factories.campaign(audience=factories.audience(kind=Audience.Kind.EVERYONE))
    monkeypatch.setattr(services, "deliveries_materialise_chunk", lambda **kw: (0, 0, 0, False))
    launch(plain, django_capture_on_commit_callbacks)  # its first range wrote nobody; the rest was lost
    # The reconciler looks at the newest first: the busy one, then the others, in this order backwards.
    listed_written, listed_empty, failed, lost, busy = (launch(group_campaign(), django_capture_on_commit_callbacks)
                                                        for _ in range(5))
    for campaign in (busy, lost, failed, listed_empty, listed_written, plain):
        _stalled(campaign, settings)
    MemberListing.objects.filter(campaign=busy).update(started_at=timezone.now())
    MemberListing.objects.filter(campaign=failed).update(status="failed")
    MemberListing.objects.filter(campaign__in=[listed_empty, listed_written]).update(status="succeeded")
    Campaign.objects.filter(pk=listed_written.pk).update(total_deliveries=1)
    queued.clear()

    restarted = recovery.reconcile()["materialisations_restarted"]

    assert sorted(queued) == sorted([("list", lost.pk), ("list", failed.pk), ("list", listed_empty.pk),
                                     ("write", listed_written.pk), ("write", plain.pk)])
    assert restarted == 5


def test_resuming_a_campaign_that_is_not_to_a_group_lists_nothing(django_capture_on_commit_callbacks, monkeypatch):
    listed: list[int] = []
    monkeypatch.setattr(jobs, "list_members", listed.append)
    monkeypatch.setattr(jobs, "feed", lambda: None)
    factories.recipient()
    campaign = factories.campaign(status=Campaign.Status.PAUSED)  # not written to the end yet

    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_resume(campaign_id=campaign.pk)

    assert listed == []


def test_an_audience_cannot_become_or_stop_being_a_group_while_a_campaign_is_written_from_it(
    directory, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(jobs, "list_members", lambda campaign_id: None)
    campaign = launch(group_campaign(), django_capture_on_commit_callbacks)  # its people not written yet
    audience = campaign.audience
    audience.kind, audience.source_id = Audience.Kind.EVERYONE, ""
    with pytest.raises(ValidationError) as refused:
        audience.clean()
    assert "still being written" in refused.value.message_dict["kind"][0]

    Campaign.objects.filter(pk=campaign.pk).update(materialised_at=timezone.now())
    audience.clean()  # written: the audience is free to change


def test_a_campaign_launched_again_is_not_held_by_a_stop_flag_left_from_before(
    directory, jobs_inline, django_capture_on_commit_callbacks, settings
):
    from bots.pacing import pacer, stop_key

    settings.APPROVAL_THRESHOLD = 3
    directory.members = [str(factories.recipient().aad_object_id) for _ in range(2)]
    campaign = group_campaign()
    pacer.stop(campaign_id=campaign.pk, reason="paused")  # as a pause before it went back to draft left it

    launch(campaign, django_capture_on_commit_callbacks)

    assert pacer.client.get(stop_key(campaign.pk)) is None
    assert len(people_sent_to(campaign)) == 2
