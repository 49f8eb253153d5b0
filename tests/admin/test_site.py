"""What every admin page carries: the header's links, the site's icon, times written in sentences."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_admin_header_offers_no_view_site_link_to_a_page_that_does_not_exist(comms_client):
    page = comms_client.get(reverse("admin:index")).content.decode()

    assert "View site" not in page
    assert comms_client.get("/").status_code == 404  # there is no public site to view


def test_the_site_serves_its_icon(client, settings, tmp_path):
    # WhiteNoise serves it, as in production (the test settings leave WhiteNoise out).
    settings.STATIC_ROOT = tmp_path
    settings.MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *settings.MIDDLEWARE]

    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
    assert b"".join(response.streaming_content if response.streaming else [response.content])[:4] == b"\x00\x00\x01\x00"


def test_a_time_ending_a_sentence_is_not_followed_by_a_second_full_stop(comms_client, approver_user):
    campaign = factories.campaign()
    morning = datetime.datetime(2026, 12, 5, 9, 30, tzinfo=datetime.timezone.utc)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.RUNNING, launched_at=morning, approved_at=morning, approved_by=approver_user
    )

    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert "Approved by avery, 5 Dec 2026, 09:30 UTC." in page
    assert "a.m.." not in page and "p.m.." not in page
