"""The audience editor for an Entra ID group or a team: the group search and the team choice it offers, the
listing a save starts and shows, listing again, and a campaign's own listing on its page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from bots.models import TeamsTeam
from bots.tokens import graph_token_provider
from campaigns import members
from campaigns.models import Audience, ListedMember, MemberListing
from delivery import services
from tests import factories

from .conftest import messages_of
from .test_audience_editor import editor_settings

GROUP = "0d5c1a7e-2f4b-4c9a-9e2d-6b1f3a8c7d10"
TEAM = "19:leedsOffice01@thread.tacv2"
GROUPS = "admin:campaigns_audience_groups"


@pytest.mark.django_db
def test_the_editor_knows_where_to_search_groups_and_which_teams_the_bot_is_in(comms_client):
    TeamsTeam.objects.create(team_id=TEAM, name="Leeds office", installed=True)
    TeamsTeam.objects.create(team_id="19:gone@thread.tacv2", name="Old team", installed=False)

    page = comms_client.get(reverse("admin:campaigns_audience_add"))

    html = page.content.decode()
    assert "crier/audience-source.js" in html
    assert 'id="id_source_id"' in html and 'id="id_source_name"' in html
    settings = editor_settings(page)
    assert settings["groups_url"] == reverse(GROUPS)
    assert settings["teams"] == [[TEAM, "Leeds office"]]


@pytest.mark.django_db
def test_saving_a_group_audience_starts_a_listing_and_its_page_shows_it(comms_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        saved = comms_client.post(reverse("admin:campaigns_audience_add"), {
            "name": "Leeds", "kind": "entra_group", "source_id": GROUP, "source_name": "Leeds office", "rules": "[]",
            "people_file_action": "include", "_continue": "1",
        })
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    audience = Audience.objects.get(name="Leeds")
    assert len(queued) == 1 and MemberListing.objects.get(audience=audience).status == "running"

    page = comms_client.get(reverse("admin:campaigns_audience_change", args=[audience.pk])).content.decode()
    assert "Members listed" in page and "Listing now: 0 members so far" in page


@pytest.mark.django_db
def test_a_group_that_is_not_one_is_a_form_error_on_its_field(comms_client):
    answer = comms_client.post(reverse("admin:campaigns_audience_add"), {
        "name": "Leeds", "kind": "entra_group", "source_id": "Leeds office", "rules": "[]",
        "people_file_action": "include",
    })
    assert answer.status_code == 200
    assert "source_id" in answer.context["adminform"].form.errors
    assert not Audience.objects.exists()


@pytest.mark.django_db
def test_listing_again_is_an_action_on_the_audience_list(comms_client, django_capture_on_commit_callbacks):
    group = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    rules = factories.audience(kind=Audience.Kind.RULES, rules=[{"field": "department", "op": "eq", "value": "x"}])
    with django_capture_on_commit_callbacks() as queued:
        answer = comms_client.post(reverse("admin:campaigns_audience_changelist"), {
            "action": "list_again", "_selected_action": [group.pk, rules.pk],
        }, follow=True)
    shown = [text for _, text in messages_of(answer)]
    assert any("Listing the members of 1 audience" in text for text in shown)
    assert any("1 audience(s) are not a group or a team" in text for text in shown)
    assert len(queued) == 1 and MemberListing.objects.filter(audience=group).count() == 1


@pytest.mark.django_db
def test_a_launched_group_campaigns_page_shows_whom_its_launch_listed(comms_client):
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP, source_name="Leeds office")
    campaign = factories.campaign(audience=audience)
    services.campaign_launch(campaign_id=campaign.pk)
    MemberListing.objects.filter(campaign=campaign).update(status="failed", error="Entra ID has no group 0d5c….")

    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert "The members of Leeds office: The listing failed: Entra ID has no group 0d5c…." in page


@pytest.mark.django_db(transaction=True)
def test_the_group_search_answers_from_entra_id_and_says_why_it_cannot(comms_client, teams):
    teams.client.graph_groups([{"id": GROUP, "displayName": "Leeds office", "description": "<b>All</b> of Leeds"}])

    found = comms_client.get(reverse(GROUPS), {"q": "leeds"}).json()
    teams.client.graph_config(permissions=["User.Read.All"])
    graph_token_provider.invalidate()  # consent changes with the next token
    refused = comms_client.get(reverse(GROUPS), {"q": "leeds"}).json()

    assert found == {"groups": [{"id": GROUP, "name": "Leeds office", "description": "<b>All</b> of Leeds",
                                 "dynamic": False}], "errors": []}
    assert refused["groups"] == [] and "GroupMember.Read.All" in refused["errors"][0]


@pytest.mark.django_db
def test_the_group_search_is_for_staff_who_may_view_audiences(client):
    outsider = User.objects.create_user("olly", "olly@example.com", "not-a-superuser", is_staff=True)
    client.force_login(outsider)
    assert client.get(reverse(GROUPS), {"q": "leeds"}).status_code == 403


@pytest.mark.django_db
def test_the_preview_of_a_saved_group_counts_its_latest_listing(comms_client):
    people = [factories.recipient(first_name=f"P{n}", last_name="Leeds", department="Ops") for n in range(3)]
    audience = factories.audience(kind=Audience.Kind.ENTRA_GROUP, source_id=GROUP)
    listing = members.listing_start(audience=audience)
    ListedMember.objects.bulk_create([ListedMember(listing=listing, recipient=p) for p in people[:2]])
    MemberListing.objects.filter(pk=listing.pk).update(status="succeeded", listed=2, matched=2)

    answer = comms_client.post(reverse("admin:campaigns_audience_preview"), {
        "kind": "entra_group", "rules": "[]", "audience": audience.pk, "source_id": GROUP, "members": "", "excluded": "",
    }).json()

    assert answer["count"] == 2 and answer["sample"] == ["P0 Leeds (Ops)", "P1 Leeds (Ops)"]
    assert answer["note"].startswith("As listed") and answer["errors"] == []
