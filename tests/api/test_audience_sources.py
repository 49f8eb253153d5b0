"""Audiences that are an Entra ID group or a team, over the API: choosing the group (search by name) or the
team, the listing that counts them, the launch's listing on the campaign, and every refusal naming its field."""

from __future__ import annotations

import uuid

import pytest

from bots.models import TeamsTeam
from campaigns import members
from campaigns.models import Audience, MemberListing
from delivery import services
from tests import factories
from tests.api.helpers import error_of

GROUP = "0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10"
TEAM = "19:leedsOffice01@thread.tacv2"


@pytest.mark.django_db
def test_a_group_audience_is_created_and_its_members_are_listed_for_its_count(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        created = api.post("/api/v1/audiences/", {"name": "Leeds", "kind": "entra_group", "source_id": GROUP,
                                                  "source_name": "Leeds office"}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["kind"], body["source_id"], body["source_name"]) == ("entra_group", GROUP, "Leeds office")
    assert body["count"] == 0 and body["listing"]["status"] == "running"
    assert len(queued) == 1  # the listing's task, once the audience is saved
    listing = MemberListing.objects.get(audience_id=body["id"])
    assert (listing.campaign, listing.source_id) == (None, GROUP)


@pytest.mark.django_db
def test_changing_the_group_lists_again_and_another_change_does_not(api, django_capture_on_commit_callbacks):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    members.listing_start(audience=audience)
    with django_capture_on_commit_callbacks() as renamed:
        api.patch(f"/api/v1/audiences/{audience.pk}/", {"name": "Leeds again"}, format="json")
    other = str(uuid.uuid4())
    with django_capture_on_commit_callbacks() as moved:
        answer = api.patch(f"/api/v1/audiences/{audience.pk}/", {"source_id": other}, format="json")

    assert answer.status_code == 200, answer.json()
    assert (len(renamed), len(moved)) == (0, 1)
    assert list(MemberListing.objects.filter(audience=audience).values_list("source_id", flat=True)) == [other, GROUP]


@pytest.mark.django_db
@pytest.mark.parametrize("body, message", [
    ({"kind": "entra_group"}, "Choose the group."),
    ({"kind": "entra_group", "source_id": "Leeds office"}, "An Entra ID group is named by its object id"),
    ({"kind": "team", "source_id": GROUP}, "A team is named by its Teams id"),
    ({"kind": "everyone", "source_id": GROUP}, "Only a group or team audience names a group or a team."),
    ({"kind": "team", "source_id": "19:neverAdded@thread.tacv2"}, "Crier's bot was never added to this team"),
])
def test_a_group_or_team_that_is_not_one_is_refused_naming_source_id(api, body, message):
    answer = api.post("/api/v1/audiences/", {"name": "Somebody", **body}, format="json")

    assert answer.status_code == 400
    error = error_of(answer)
    assert list(error["fields"]) == ["source_id"] and message in error["fields"]["source_id"][0]
    assert not Audience.objects.exists()


@pytest.mark.django_db
def test_the_teams_the_bot_is_in_are_listed_to_choose_from(api):
    TeamsTeam.objects.create(team_id=TEAM, name="Leeds office", installed=True)
    TeamsTeam.objects.create(team_id="19:gone@thread.tacv2", name="Old team", installed=False)

    answer = api.get("/api/v1/audiences/teams/")

    assert answer.status_code == 200
    assert [(team["id"], team["name"]) for team in answer.json()] == [(TEAM, "Leeds office")]


@pytest.mark.django_db(transaction=True)
def test_groups_are_searched_by_a_word_of_their_name_in_entra_id(api, teams):
    teams.client.graph_groups([
        {"id": GROUP, "displayName": "Leeds office", "description": "Everyone at Leeds", "members": []},
        {"id": str(uuid.uuid4()), "displayName": "York office", "membershipRule": "user.city -eq \"York\""},
    ])

    found = api.get("/api/v1/audiences/groups/", {"search": "lee"})
    dynamic = api.get("/api/v1/audiences/groups/", {"search": "york"})

    assert found.status_code == 200, found.json()
    assert found.json() == [{"id": GROUP, "name": "Leeds office", "description": "Everyone at Leeds", "dynamic": False}]
    assert dynamic.json()[0]["dynamic"] is True


@pytest.mark.django_db(transaction=True)
def test_a_search_without_a_word_or_without_consent_is_a_clear_error(api, teams):
    empty = api.get("/api/v1/audiences/groups/", {"search": "  "})
    teams.client.graph_config(permissions=["User.Read.All"])
    refused = api.get("/api/v1/audiences/groups/", {"search": "leeds"})

    assert empty.status_code == 400 and list(error_of(empty)["fields"]) == ["search"]
    assert refused.status_code == 502
    assert error_of(refused)["code"] == "graph_refused" and "GroupMember.Read.All" in error_of(refused)["message"]


@pytest.mark.django_db
def test_a_launched_group_campaign_shows_the_listing_it_is_sent_to(api):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP, source_name="Leeds office")
    campaign = factories.campaign(audience=audience)
    services.campaign_launch(campaign_id=campaign.pk)

    body = api.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    listed = api.get("/api/v1/campaigns/").json()["results"][0]

    assert body["status"] == "running"
    assert body["listing"]["status"] == "running" and body["listing"]["source_name"] == "Leeds office"
    assert listed["listing"] is None


@pytest.mark.django_db
def test_a_group_id_is_kept_in_the_one_spelling_graph_writes(api):
    answer = api.post("/api/v1/audiences/", {"name": "Leeds", "kind": "entra_group",
                                             "source_id": "{" + GROUP.upper() + "}"}, format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["source_id"] == GROUP


@pytest.mark.django_db
def test_a_welcome_campaign_to_a_group_is_refused_naming_the_audience(api):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    factories.category(slug="news")
    answer = api.post("/api/v1/campaigns/", {"name": "Hello", "kind": "welcome", "template": factories.template().pk,
                                             "audience": audience.pk, "category": "news"}, format="json")
    assert answer.status_code == 400 and list(error_of(answer)["fields"]) == ["audience"]
