"""A campaign that installs the app for people who lack it, over real processes: the API, a real worker and
beat, the bot endpoint on a live server (which hears of each installation), and the emulator's Teams and Graph
with their limits on. Everyone is reached once, the installs Crier made are recorded, nobody who removed the app
has it installed again, and the installations set off no welcome message."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.conf import settings

from bots.models import TeamsAddress
from campaigns.models import Campaign
from delivery.models import Delivery

from .test_end_to_end import api, celery, post  # noqa: F401 (the API client and the real processes, fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_people_without_the_app_have_it_installed_and_are_each_reached_once(teams, celery, api):  # noqa: F811
    people = [{"external_id": f"I{n:03d}", "aad_object_id": str(uuid.uuid4()), "tenant_id": settings.BOT_TENANT_ID,
               "first_name": f"Person{n}"} for n in range(40)]
    assert post(api, "/api/v1/recipients/bulk/", {"recipients": people})["created"] == 40
    ids = [p["aad_object_id"] for p in people]
    teams.client.config(auto_install=False, limits=True)
    teams.client.graph_users([{"id": aad, "displayName": f"Person {n}"} for n, aad in enumerate(ids)])
    # 10 have the app, 28 never installed it, and 2 removed it themselves
    removed = ids[38:]
    teams.client.register_users([{"aad_object_id": aad, "installed": n < 10 or aad in removed}
                                 for n, aad in enumerate(ids)])
    for aad in removed:
        teams.client.uninstall(aad)  # the bot hears of it: their address says so
    celery.wait_until(lambda: TeamsAddress.objects.filter(state="uninstalled").count() == 2, timeout=30,
                      what="the uninstalls to reach the bot")

    post(api, "/api/v1/templates/", {"name": "News", "kind": "markdown", "text": "Hello {{first_name}}."})
    post(api, "/api/v1/categories/", {"slug": "news", "name": "News", "description": "", "mandatory": False})
    template = api.get("/api/v1/templates/").json()["results"][0]["id"]
    post(api, "/api/v1/templates/", {"name": "Welcome", "kind": "markdown", "text": "Welcome!"})
    welcome_template = [t for t in api.get("/api/v1/templates/").json()["results"] if t["name"] == "Welcome"][0]["id"]
    welcome = post(api, "/api/v1/campaigns/", {"name": "Welcome", "kind": "welcome", "template": welcome_template,
                                               "category": "news"})
    post(api, f"/api/v1/campaigns/{welcome['id']}/launch/", {})
    campaign = post(api, "/api/v1/campaigns/", {"name": "Everyone", "kind": "announcement", "template": template,
                                                "category": "news", "install_app": True})
    post(api, f"/api/v1/campaigns/{campaign['id']}/launch/", {})
    celery.wait_until(lambda: Campaign.objects.get(pk=campaign["id"]).status == "completed", timeout=120,
                      what="the campaign to complete")

    body = api.get(f"/api/v1/campaigns/{campaign['id']}/").json()
    assert (body["counts"]["sent"], body["counts"]["failed"], body["counts"]["installed"]) == (38, 2, 28), body
    rows = {str(d.recipient.aad_object_id): d for d in Delivery.objects.filter(campaign_id=campaign["id"])}
    assert {aad for aad, d in rows.items() if d.install == "installed"} == set(ids[10:38])
    assert all(rows[aad].status == "failed" and rows[aad].install == "" for aad in removed)
    assert teams.client.graph_stats()["installs"] == 28 and teams.client.graph_stats()["install_throttled"] == 0
    assert all(teams.client.user(aad)["installed"] is False for aad in removed)
    received = Counter(message["aad_object_id"] for message in teams.client.messages())
    assert received == Counter({aad: 1 for aad in ids[:38]})  # each once, the welcome campaign sent to nobody
    assert teams.client.stats()["duplicates"] == 0
    assert not Delivery.objects.filter(campaign_id=welcome["id"]).exists()
