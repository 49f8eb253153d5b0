"""An urgent campaign over real processes: the API, a real worker and beat, and the emulator's Teams and Graph
with their limits on. Everyone is sent the message once and, after it, one pop-up in their activity feed, a
hundred people a Graph call at most, without a 429."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns.approvals import approval_fingerprint
from campaigns.models import Campaign
from delivery.models import Delivery

from .test_end_to_end import api, celery, post  # noqa: F401 (the API client and the real processes, fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PEOPLE = 250


def test_an_urgent_campaign_pops_up_once_for_everyone_after_their_message(teams, celery, api):  # noqa: F811
    people = [{"external_id": f"U{n:03d}", "aad_object_id": str(uuid.uuid4()), "tenant_id": settings.BOT_TENANT_ID,
               "first_name": f"Person{n}"} for n in range(PEOPLE)]
    assert post(api, "/api/v1/recipients/bulk/", {"recipients": people})["created"] == PEOPLE
    teams.client.config(limits=True)
    teams.client.register_users([{"aad_object_id": p["aad_object_id"], "installed": True} for p in people])
    post(api, "/api/v1/templates/", {"name": "Closed", "kind": "markdown", "text": "Hello {{first_name}}: stay home."})
    post(api, "/api/v1/categories/", {"slug": "news", "name": "News", "description": "", "mandatory": False})
    template = api.get("/api/v1/templates/").json()["results"][0]["id"]
    created = post(api, "/api/v1/campaigns/", {"name": "Office closed", "kind": "announcement", "template": template,
                                               "category": "news", "urgent": True,
                                               "urgent_text": "The office is closed today: stay home."})
    campaign = Campaign.objects.get(pk=created["id"])
    # an approver approved it in the admin (urgent always needs one)
    Campaign.objects.filter(pk=campaign.pk).update(approved_at=timezone.now(),
                                                   approved_fingerprint=approval_fingerprint(campaign=campaign))

    post(api, f"/api/v1/campaigns/{campaign.pk}/launch/", {})
    celery.wait_until(lambda: api.get(f"/api/v1/campaigns/{campaign.pk}/").json()["counts"]["notified"] == PEOPLE,
                      timeout=120, what="every urgent notice to be sent")

    body = api.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert (body["status"], body["counts"]["sent"], body["counts"]["notice_failed"]) == ("completed", PEOPLE, 0)
    assert set(Delivery.objects.filter(campaign_id=campaign.pk).values_list("notice", flat=True)) == {"notified"}
    graph = teams.client.graph_stats()
    assert graph["activity_delivered"] == PEOPLE and graph["activity_throttled"] == 0
    assert graph["activity_calls"] >= PEOPLE // 100 + 1
    shown = Counter()
    for person in people:
        notices = teams.client.graph_activity(person["aad_object_id"])
        shown[len(notices)] += 1
        assert all(n["previewText"] == "The office is closed today: stay home." for n in notices)
    assert shown == Counter({1: PEOPLE})  # each person once
    received = Counter(message["aad_object_id"] for message in teams.client.messages())
    assert received == Counter({p["aad_object_id"]: 1 for p in people}) and teams.client.stats()["duplicates"] == 0
