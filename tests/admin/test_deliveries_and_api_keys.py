"""The read-only delivery list, and API keys (superusers only)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from campaigns.api.auth import api_key_create, hash_key
from campaigns.models import ApiKey
from delivery.models import Delivery
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db


def test_delivery_list_filters_by_campaign_and_status_and_offers_that_campaigns_error_codes(comms_client):
    people = [factories.recipient() for _ in range(3)]
    campaign, other = factories.campaign(), factories.campaign()
    failed = Delivery.objects.create(campaign=campaign, recipient=people[0], status="failed", error_code="BotDisabled")
    Delivery.objects.create(campaign=campaign, recipient=people[1], status="sent")
    Delivery.objects.create(campaign=other, recipient=people[2], status="failed", error_code="ConversationBlocked")

    response = comms_client.get(
        reverse("admin:delivery_delivery_changelist"), {"campaign__id__exact": campaign.pk, "status__exact": "failed"}
    )

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [failed]
    assert "?campaign__id__exact" in response.content.decode() and "error_code=BotDisabled" in response.content.decode()
    assert "ConversationBlocked" not in response.content.decode()


def test_delivery_list_finds_a_person_by_exact_external_id(comms_client):
    wanted, other = factories.recipient(external_id="emp-42"), factories.recipient(external_id="emp-420")
    campaign = factories.campaign()
    mine = Delivery.objects.create(campaign=campaign, recipient=wanted)
    Delivery.objects.create(campaign=campaign, recipient=other)

    response = comms_client.get(reverse("admin:delivery_delivery_changelist"), {"q": "emp-42"})

    assert list(response.context["cl"].result_list) == [mine]
    assert response.context["cl"].show_full_result_count is False


def test_delivery_list_counts_no_further_than_its_cap_and_shows_the_newest_first(comms_client, monkeypatch):
    from delivery.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 2)
    campaign = factories.campaign()
    rows = [Delivery.objects.create(campaign=campaign, recipient=factories.recipient()) for _ in range(4)]

    response = comms_client.get(reverse("admin:delivery_delivery_changelist"))

    assert response.context["cl"].result_count == 3  # counted up to one past the cap, then stopped
    assert "more than 2 deliveries" in response.content.decode()
    assert list(response.context["cl"].result_list) == rows[::-1]


def test_deliveries_cannot_be_changed_even_by_a_superuser(admin_client):
    delivery = Delivery.objects.create(campaign=factories.campaign(), recipient=factories.recipient())

    page = admin_client.get(reverse("admin:delivery_delivery_change", args=[delivery.pk]))
    response = admin_client.post(reverse("admin:delivery_delivery_change", args=[delivery.pk]), {"status": "sent"})

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"


def test_adding_an_api_key_shows_its_secret_once_and_stores_only_its_hash(admin_client):
    add_page = admin_client.get(reverse("admin:campaigns_apikey_add"))
    assert list(add_page.context["adminform"].form.fields) == ["name", "scopes", "expires_at"]

    response = admin_client.post(
        reverse("admin:campaigns_apikey_add"), {"name": "hr-sync", "scopes": ["read", "recipients:write"]}
    )

    assert response.status_code == 200
    [secret] = set(re.findall(r"crier_[A-Za-z0-9_\-]{20,}", response.content.decode()))
    api_key = ApiKey.objects.get(name="hr-sync")
    assert api_key.key_hash == hash_key(secret)
    assert secret not in {api_key.name, api_key.prefix, api_key.key_hash}
    assert secret.startswith(api_key.prefix)
    assert api_key.scopes == ["read", "recipients:write"]
    again = admin_client.get(reverse("admin:campaigns_apikey_changelist")).content.decode()
    change_page = admin_client.get(reverse("admin:campaigns_apikey_change", args=[api_key.pk])).content.decode()
    assert secret not in again and secret not in change_page
    assert api_key.key_hash not in change_page


def test_a_new_api_key_is_shown_in_the_page_with_no_store_and_never_in_a_cookie_or_the_session(admin_client):
    response = admin_client.post(reverse("admin:campaigns_apikey_add"), {"name": "hr-sync", "scopes": ["read"]})

    [secret] = set(re.findall(r"crier_[A-Za-z0-9_\-]{20,}", response.content.decode()))
    assert "no-store" in response["Cache-Control"]
    assert all(secret not in morsel.OutputString() for morsel in response.cookies.values())
    assert secret not in str(response.items())
    assert all(secret not in str(value) for value in admin_client.session.values())
    assert messages_of(admin_client.get(reverse("admin:campaigns_apikey_changelist"))) == []
    # Django's messages cookie is signed, not encrypted: a secret put there would be readable by anyone
    # holding the browser's cookies.
    assert all(secret not in morsel.value for morsel in admin_client.cookies.values())


def test_revoking_an_api_key_stamps_it(admin_client):
    api_key, _ = api_key_create(name="old-sync")

    admin_client.post(
        reverse("admin:campaigns_apikey_changelist"), {"action": "revoke", "_selected_action": [api_key.pk]}
    )

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and not api_key.is_active
