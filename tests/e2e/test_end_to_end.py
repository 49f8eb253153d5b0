"""The whole product once: the REST API, PostgreSQL, Redis, a real Celery worker and beat, the bot
endpoint on a live server, and the Teams emulator enforcing Microsoft's published limits."""

from __future__ import annotations

import datetime
import json
import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.api.auth import api_key_create
from campaigns.models import Campaign, OptOut, Recipient

from .processes import running_engine

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PEOPLE = 300


@pytest.fixture
def celery(teams, live_server, redis_client, tmp_path):
    with running_engine(teams, bot_endpoint=f"{live_server.url}/api/messages", log_dir=tmp_path) as processes:
        yield processes


@pytest.fixture
def api():
    _, secret = api_key_create(name="hr-system")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def post(api, path, body, status=(200, 201)):
    response = api.post(path, body, format="json")
    assert response.status_code in status, response.content
    return response.json()


def wait_until(condition, processes, timeout=120.0, what="condition"):
    return processes.wait_until(condition, timeout=timeout, what=what)


def campaign_status(campaign_id):
    return Campaign.objects.get(pk=campaign_id).status


def test_hr_system_to_teams_end_to_end(teams, celery, api):
    tenant = settings.BOT_TENANT_ID
    people = [
        {"external_id": f"E{n:04d}", "aad_object_id": str(uuid.uuid4()), "tenant_id": tenant,
         "first_name": f"Person{n}", "email": f"p{n}@contoso.example", "department": "Sales" if n % 2 else "Legal",
         "attributes": {"desk": f"D-{n}"}}
        for n in range(PEOPLE)
    ]
    result = post(api, "/api/v1/recipients/bulk/", {"recipients": people})
    assert result["created"] == PEOPLE and result["errors"] == []
    blocked = people[10]["aad_object_id"]
    teams.client.register_users([{"aad_object_id": p["aad_object_id"], "name": p["first_name"]} for p in people])
    teams.client.block(blocked)

    template = post(api, "/api/v1/templates/", {"name": "News", "kind": "markdown", "text": "Hello {{first_name}}, big news."})
    post(api, "/api/v1/categories/", {"slug": "news", "name": "News", "description": "", "mandatory": False})
    campaign = post(api, "/api/v1/campaigns/", {"name": "Launch day", "kind": "announcement", "template": template["id"],
                                                 "audience": None, "category": "news"})
    post(api, f"/api/v1/campaigns/{campaign['id']}/launch/", {})

    wait_until(lambda: campaign_status(campaign["id"]) == "completed", celery, what="the announcement to complete")

    counts = api.get(f"/api/v1/campaigns/{campaign['id']}/").json()["counts"]
    assert (counts["sent"], counts["failed"], counts["total"]) == (PEOPLE - 1, 1, PEOPLE)
    received = Counter(m["aad_object_id"] for m in teams.client.messages())
    assert set(received.values()) == {1}
    assert len(received) == PEOPLE - 1 and blocked not in received
    assert OptOut.objects.get(recipient__aad_object_id=blocked).source == OptOut.Source.BLOCKED

    # A scheduled campaign goes out once, when its time comes, even though beat ticks every second.
    reminder = post(api, "/api/v1/templates/", {"name": "Reminder", "kind": "markdown", "text": "Reminder, {{first_name}}."})
    scheduled = post(api, "/api/v1/campaigns/", {"name": "Reminder", "kind": "announcement", "template": reminder["id"],
                                                  "audience": None, "category": "news"})
    send_at = timezone.now() + datetime.timedelta(seconds=3)
    post(api, f"/api/v1/campaigns/{scheduled['id']}/schedule/", {"send_at": send_at.isoformat()})
    assert campaign_status(scheduled["id"]) == "scheduled"
    wait_until(lambda: campaign_status(scheduled["id"]) == "completed", celery, what="the scheduled campaign")
    launched_at = Campaign.objects.get(pk=scheduled["id"]).launched_at
    assert launched_at >= send_at
    received = Counter(m["aad_object_id"] for m in teams.client.messages())
    assert set(received.values()) == {2} and len(received) == PEOPLE - 1
    stats = teams.client.stats()
    # The emulator counts the same content reaching the same person twice as a duplicate.
    assert stats["duplicates"] == 0 and stats["early_calls"] == 0, json.dumps(stats)
    # Paced below Microsoft's published 50 requests per second, Teams (almost) never says no.
    assert sum(stats["throttled"].values()) <= 0.005 * stats["requests"], json.dumps(stats)

    # A new starter installs the bot and is welcomed once.
    welcome_template = post(api, "/api/v1/templates/", {"name": "Welcome", "kind": "markdown", "text": "Welcome {{first_name}}!"})
    welcome = post(api, "/api/v1/campaigns/", {"name": "Welcome", "kind": "welcome", "template": welcome_template["id"],
                                                "audience": None, "category": "news"})
    post(api, f"/api/v1/campaigns/{welcome['id']}/launch/", {})
    newcomer = {"external_id": "NEW1", "aad_object_id": str(uuid.uuid4()), "tenant_id": tenant, "first_name": "Nova"}
    post(api, "/api/v1/recipients/bulk/", {"recipients": [newcomer]})
    teams.client.install(newcomer["aad_object_id"])
    teams.client.install(newcomer["aad_object_id"])

    def welcomed():
        return teams.client.messages(user=newcomer["aad_object_id"])

    [message] = wait_until(welcomed, celery, what="the welcome message")
    assert message["activity"]["text"] == "Welcome Nova!"
    assert Recipient.objects.count() == PEOPLE + 1

    # A transactional notice to two named people, now.
    laptop = post(api, "/api/v1/templates/", {"name": "Laptop", "kind": "markdown", "text": "Your laptop is ready at {{attributes.desk}}, {{first_name}}."})
    direct = post(api, "/api/v1/messages/", {"template": laptop["id"], "category": "news", "recipients": ["E0001", "E0002"]})
    wait_until(lambda: campaign_status(direct["id"]) == "completed", celery, what="the direct message")
    for external_id, name in (("E0001", "Person1"), ("E0002", "Person2")):
        texts = [m["activity"]["text"] for m in teams.client.messages(user=people[int(external_id[1:])]["aad_object_id"])]
        assert texts.count(f"Your laptop is ready at D-{int(external_id[1:])}, {name}.") == 1
