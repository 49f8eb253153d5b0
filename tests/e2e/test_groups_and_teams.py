"""Campaigns to an Entra ID group and to a team, over real processes: the API, a real worker and beat, the
bot endpoint on a live server, and the emulator's Teams and Graph. The team's members never installed the
app themselves: the bot, added to their team, reaches each of them through the team's roster."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.conf import settings

from bots.models import TeamsTeam
from campaigns.models import Campaign, MemberListing

from .test_end_to_end import api, celery, post  # noqa: F401 (the API client and the real processes, fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
GROUP, NESTED = str(uuid.uuid4()), str(uuid.uuid4())


def test_a_group_and_a_team_are_listed_and_reached_each_person_once(teams, celery, api):  # noqa: F811
    people = [{"external_id": f"G{n:03d}", "aad_object_id": str(uuid.uuid4()), "tenant_id": settings.BOT_TENANT_ID,
               "first_name": f"Person{n}"} for n in range(40)]
    assert post(api, "/api/v1/recipients/bulk/", {"recipients": people})["created"] == 40
    ids = [p["aad_object_id"] for p in people]
    teams.client.config(auto_install=False)  # nobody is reached without the app, in person or through a team
    teams.client.register_users([{"aad_object_id": aad, "name": f"P{n}"} for n, aad in enumerate(ids[:20])])
    stranger = str(uuid.uuid4())
    teams.client.graph_users([{"id": aad, "displayName": f"Person {n}"} for n, aad in enumerate(ids[:20])]
                             + [{"id": stranger, "displayName": "Not in Crier"}])
    teams.client.graph_groups([
        {"id": GROUP, "displayName": "Leeds office", "members": [*ids[:10], NESTED, stranger]},
        {"id": NESTED, "displayName": "Leeds warehouse", "members": ids[10:20]},
    ])
    team = teams.client.teams_create("Project Falcon", ids[20:40])  # none of them installed the app
    teams.client.team_install(team["id"])  # Teams tells the bot it was added
    assert TeamsTeam.objects.get(team_id=team["id"]).name == "Project Falcon"

    post(api, "/api/v1/templates/", {"name": "News", "kind": "markdown", "text": "Hello {{first_name}}."})
    post(api, "/api/v1/categories/", {"slug": "news", "name": "News", "description": "", "mandatory": False})
    template = api.get("/api/v1/templates/").json()["results"][0]["id"]
    group_audience = post(api, "/api/v1/audiences/", {"name": "Leeds", "kind": "entra_group", "source_id": GROUP})
    team_audience = post(api, "/api/v1/audiences/", {"name": "Falcon", "kind": "team", "source_id": team["id"]})

    def count(audience):
        body = api.get(f"/api/v1/audiences/{audience['id']}/").json()
        return body["count"] if (body["listing"] or {}).get("status") == "succeeded" else None

    celery.wait_until(lambda: count(group_audience) == 20 and count(team_audience) == 20, timeout=60,
                      what="both audiences listed")

    launched = []
    for audience in (group_audience, team_audience):
        campaign = post(api, "/api/v1/campaigns/", {"name": audience["name"], "kind": "announcement",
                                                     "template": template, "audience": audience["id"],
                                                     "category": "news"})
        post(api, f"/api/v1/campaigns/{campaign['id']}/launch/", {})
        launched.append(campaign["id"])
    celery.wait_until(lambda: all(Campaign.objects.get(pk=pk).status == "completed" for pk in launched), timeout=120,
                      what="both campaigns to complete")

    for campaign_id in launched:
        body = api.get(f"/api/v1/campaigns/{campaign_id}/").json()
        assert (body["counts"]["sent"], body["counts"]["failed"], body["counts"]["total"]) == (20, 0, 20), body
        assert body["listing"]["status"] == "succeeded"
    assert MemberListing.objects.get(campaign_id=launched[0]).unknown == 1
    received = Counter(message["aad_object_id"] for message in teams.client.messages())
    assert received == Counter({aad: 1 for aad in ids})
    assert teams.client.stats()["duplicates"] == 0
