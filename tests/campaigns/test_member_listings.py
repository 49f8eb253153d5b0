"""Listing the members of an Entra ID group and of a Teams team against the emulator's Microsoft Graph and
Bot Connector (real HTTPS and tokens): who Crier knows, who not, paging, nested groups, what a team's
roster teaches about reaching its members, and every refusal in plain words."""

from __future__ import annotations

import uuid

import pytest

from bots import members as reader
from bots.models import TeamsAddress, TeamsTeam
from campaigns import members
from campaigns.models import Audience, ListedMember, MemberListing
from campaigns.selectors import audience_count, audience_preview
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

GROUP, NESTED = "0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10", "1e6d2b8f-3a5c-4dab-8f3e-7c2a4b9d8e21"
TEAM = "19:leedsOffice01@thread.tacv2"


def people(count: int) -> list:
    return [factories.recipient() for _ in range(count)]


def listed(audience: Audience) -> MemberListing:
    listing = members.listing_start(audience=audience)
    assert members.listing_run(listing_id=listing.pk) is not None
    listing.refresh_from_db()
    return listing


def who(listing: MemberListing) -> set[int]:
    return set(ListedMember.objects.filter(listing=listing).values_list("recipient_id", flat=True))


@pytest.fixture
def group(teams, monkeypatch):
    """A group with a nested group that holds the first group again (a cycle), three pages of two."""
    monkeypatch.setattr(reader, "GRAPH_PAGE", 2)
    staff = people(4)
    stranger = str(uuid.uuid4())
    for person in staff:
        teams.client.graph_users([{"id": str(person.aad_object_id), "displayName": str(person)}])
    teams.client.graph_users([{"id": stranger, "displayName": "Somebody Else"}])
    teams.client.graph_groups([
        {"id": GROUP, "displayName": "Leeds office", "members": [str(staff[0].aad_object_id), NESTED, stranger]},
        {"id": NESTED, "displayName": "Leeds warehouse", "members": [str(p.aad_object_id) for p in staff[1:]] + [GROUP]},
    ])
    return staff


def test_a_group_is_listed_with_its_nested_groups_members_each_once_and_its_strangers_counted(group):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP, source_name="old name")
    listing = listed(audience)

    assert listing.status == MemberListing.Status.SUCCEEDED
    assert (listing.listed, listing.matched, listing.unknown, listing.pages) == (5, 4, 1, 3)
    assert listing.source_name == "Leeds office"  # its name as Entra ID has it now
    assert listing.unknown_sample == [f"Somebody Else ({listing.unknown_sample[0].split('(')[1]}"]
    assert who(listing) == {p.pk for p in group}
    assert audience_count(audience=audience) == 4


def test_a_new_look_replaces_the_audiences_earlier_looks(group, teams):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    first = listed(audience)
    teams.client.graph_group_members(GROUP, remove=[NESTED])
    second = listed(audience)

    assert not MemberListing.objects.filter(pk=first.pk).exists()
    assert who(second) == {group[0].pk} and audience_count(audience=audience) == 1


def test_a_group_is_found_by_a_word_of_its_name(group):
    found = reader.groups_search("ware")
    assert [(g.id, g.name) for g in found] == [(NESTED, "Leeds warehouse")]
    assert {g.name for g in reader.groups_search("LEEDS")} == {"Leeds office", "Leeds warehouse"}
    assert reader.groups_search('"  ') == []


def test_an_unknown_group_fails_the_listing_saying_so(teams):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=str(uuid.uuid4()))
    listing = listed(audience)
    assert listing.status == MemberListing.Status.FAILED
    assert "Entra ID has no group" in listing.error and "Choose the group again" in listing.error


def test_without_the_group_permission_the_listing_names_the_permission_to_grant(group, teams):
    teams.client.graph_config(permissions=["User.Read.All"])
    listing = listed(factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP))
    assert listing.status == MemberListing.Status.FAILED
    assert "GroupMember.Read.All" in listing.error and "consent" in listing.error


def test_graphs_429_is_waited_out_and_the_listing_goes_on(group, teams):
    teams.client.graph_config(throttle_next=1, retry_after_seconds=1)
    listing = listed(factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP))
    assert listing.status == MemberListing.Status.SUCCEEDED and listing.matched == 4
    assert teams.client.graph_stats()["throttled"] == 1


def test_the_editor_glances_at_a_group_being_chosen_and_counts_it_exactly_when_it_is_one_page(group, monkeypatch):
    monkeypatch.setattr(reader, "GRAPH_PAGE", 10)
    one_page = audience_preview(kind="entra_group", rules=[], member_ids=None, excluded_ids=None, source_id=GROUP)
    assert one_page.count == 4 and one_page.errors == [] and "“Leeds office” has 5 members" in one_page.note

    monkeypatch.setattr(reader, "GRAPH_PAGE", 2)
    paged = audience_preview(kind="entra_group", rules=[], member_ids=None, excluded_ids=None, source_id=GROUP)
    assert paged.count is None and len(paged.sample) == 2 and "5 members" in paged.note

    unknown = audience_preview(kind="entra_group", rules=[], member_ids=None, excluded_ids=None,
                               source_id=str(uuid.uuid4()))
    assert unknown.count is None and "Entra ID has no group" in unknown.note


def test_the_editor_counts_a_saved_group_from_its_latest_listing(group):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    before = audience_preview(kind="entra_group", rules=[], member_ids=None, excluded_ids=None,
                              audience_id=audience.pk, source_id=GROUP)
    assert before.count is None and "saving lists its members" in before.note
    listed(audience)
    after = audience_preview(kind="entra_group", rules=[], member_ids=None, excluded_ids=[group[0].pk],
                             audience_id=audience.pk, source_id=GROUP)
    assert after.count == 3 and "5 members; 1 of them are not among Crier's people" in after.note


# --- Teams teams ---------------------------------------------------------------------------------------


@pytest.fixture
def team(teams, monkeypatch):
    """A team of 60 (Teams gives at least 50 a page), 58 Crier knows; the bot added to it."""
    monkeypatch.setattr(reader, "TEAM_PAGE", 50)
    staff = people(58)
    strangers = [str(uuid.uuid4()) for _ in range(2)]
    teams.client.config(bot_endpoint="http://127.0.0.1:9/api/messages")  # nobody hears Teams' activities here
    teams.client.teams_create("Leeds office", [str(p.aad_object_id) for p in staff] + strangers, id=TEAM)
    teams.client.team_install(TEAM)  # the activity it sends finds no bot: the team is recorded below
    TeamsTeam.objects.create(team_id=TEAM, name="Leeds office", tenant_id=factories.TENANT,
                             service_url=teams.service_url, installed=True)
    return staff


def test_a_team_is_listed_page_by_page_and_its_roster_gives_each_member_a_teams_id(team, teams):
    kept = TeamsAddress.objects.create(aad_object_id=team[0].aad_object_id, user_id="29:own-chat",
                                       conversation_id="a:own", service_url="https://smba.example/emea/")
    listing = listed(factories.audience(kind=Audience.Kind.TEAM, source_id=TEAM))

    assert listing.status == MemberListing.Status.SUCCEEDED
    assert (listing.listed, listing.matched, listing.unknown, listing.pages) == (60, 58, 2, 2)
    assert who(listing) == {p.pk for p in team}
    second = TeamsAddress.objects.get(aad_object_id=team[1].aad_object_id)
    assert second.user_id == teams.client.user(str(team[1].aad_object_id))["user_id"]
    assert second.service_url == teams.service_url and second.conversation_id == ""
    kept.refresh_from_db()
    assert (kept.user_id, kept.service_url) == ("29:own-chat", "https://smba.example/emea/")  # its own chat says more


def test_a_member_of_the_team_who_never_installed_the_app_is_reached_through_its_roster(team, teams):
    import json

    from bots.addresses import address_of
    from bots.schema import message_activity
    from bots.transport import TeamsTransport

    listed(factories.audience(kind=Audience.Kind.TEAM, source_id=TEAM))
    person = team[5]
    assert teams.client.user(str(person.aad_object_id))["installed"] is False
    stored = TeamsAddress.objects.filter(aad_object_id=person.aad_object_id).values_list(
        "user_id", "tenant_id", "service_url", "conversation_id").get()
    address = address_of(aad_object_id=person.aad_object_id, tenant_id=person.tenant_id, stored=stored)

    result = TeamsTransport().send(address=address, activity_json=json.dumps(message_activity(text="Hello")).encode())

    assert result.activity_id
    assert len(teams.client.messages(user=str(person.aad_object_id))) == 1


def test_a_team_the_bot_was_removed_from_fails_the_listing_saying_what_to_do(team, teams):
    teams.client.team_uninstall(TEAM)  # Teams knows; Crier was not told
    listing = listed(factories.audience(kind=Audience.Kind.TEAM, source_id=TEAM))
    assert listing.status == MemberListing.Status.FAILED
    assert "no longer in the team “Leeds office”" in listing.error and "add the app to the team again" in listing.error


def test_a_team_crier_was_never_added_to_fails_the_listing(teams):
    listing = listed(factories.audience(kind=Audience.Kind.TEAM, source_id="19:unknownTeam@thread.tacv2"))
    assert listing.status == MemberListing.Status.FAILED and "never added to this team" in listing.error


def test_two_runs_of_one_listing_never_list_at_once(group):
    from django.db import connection

    listing = members.listing_start(audience=factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP))
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [members.LISTING_LOCK, listing.pk])
        assert members.listing_held(listing.pk) is True
        assert members.listing_run(listing_id=listing.pk) is None
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [members.LISTING_LOCK, listing.pk])
    finally:
        other.close()
    assert members.listing_held(listing.pk) is False
    assert members.listing_run(listing_id=listing.pk).status == MemberListing.Status.SUCCEEDED

