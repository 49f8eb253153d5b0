"""The emulator's inbox page draws messages as Teams does: markdown rendered and cards drawn by the
Adaptive Cards renderer the admin uses, its scripts served by the emulator itself (no CDN)."""

from __future__ import annotations

import json
import re

import pytest
import urllib3

from delivery import services
from delivery.sending import delivery_send
from tests import factories

pytestmark = pytest.mark.django_db


def get(teams, path: str) -> urllib3.BaseHTTPResponse:
    return urllib3.PoolManager(ca_certs=str(teams.ca_file)).request("GET", teams.url + path)


def sent_to(person, **template) -> None:
    campaign = factories.campaign(template=factories.template(**template))
    services.campaign_launch(campaign_id=campaign.pk)
    delivery_send(delivery_id=campaign.deliveries.get(recipient=person).pk)


def test_the_inbox_hands_each_message_to_the_admin_s_renderer_served_locally(teams):
    person = factories.recipient(first_name="Robin")
    sent_to(person, text="Hello {{first_name}}: the **3rd floor lab** opens Monday.")

    page = get(teams, f"/inbox/{person.aad_object_id}").data.decode()

    for name in ("markdown-it.min.js", "adaptivecards.min.js", "card-preview.js"):
        assert f'<script src="/static/{name}" defer></script>' in page
    # nothing loaded from anywhere else (ids on the page are random: "cdn" may be spelled inside one)
    assert re.findall(r'(?:src|href)="([^"]*)"', page) and all(
        link.startswith("/") for link in re.findall(r'(?:src|href)="([^"]*)"', page))
    [(element_id, data)] = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page)
    assert json.loads(data) == {"text": "Hello Robin: the **3rd floor lab** opens Monday."}
    assert f'data-activity-source="{element_id}"' in page


def test_the_renderer_s_files_are_the_admin_s_own(teams):
    preview = get(teams, "/static/card-preview.js")
    cards = get(teams, "/static/adaptivecards.min.js")

    assert preview.status == 200 and preview.headers["Content-Type"].startswith("text/javascript")
    with open("campaigns/static/crier/card-preview.js", "rb") as admin_script:
        assert preview.data == admin_script.read()
    assert cards.status == 200 and b"AdaptiveCard" in cards.data
    assert get(teams, "/static/..%2F..%2Fsettings%2Fsettings.py").status == 404
    assert get(teams, "/static/pages.py").status == 404


def test_a_card_s_text_cannot_end_its_data_block(teams):
    person = factories.recipient(first_name="</script><script>alert(1)</script>")
    sent_to(person, text="Hi {{first_name}} & <!-- all")

    page = get(teams, f"/inbox/{person.aad_object_id}").data.decode()

    assert "<script>alert(1)" not in page
    [data] = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', page)
    assert json.loads(data)["text"].startswith("Hi ")
    assert "<!--" not in data and "&" not in data


def test_the_inbox_allows_only_its_own_scripts(teams):
    person = factories.recipient(first_name="Robin")
    sent_to(person, text="Hello {{first_name}}")

    page = get(teams, f"/inbox/{person.aad_object_id}")

    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["Content-Security-Policy"].split(";") if directive.strip()
    }
    assert policy["script-src"] == ["'self'"]  # no inline script, no other origin: a message cannot run one
    assert policy["default-src"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


def test_a_tester_reads_and_reacts_from_the_inbox_and_the_bot_hears_it_as_from_teams(teams, live_server, transactional_db):
    from django.urls import reverse

    from delivery.models import Delivery
    from delivery.progress import reactions_from_rows

    teams.client.config(bot_endpoint=f"{live_server.url}{reverse('bot-messages')}")
    person = factories.recipient()
    teams.client.register_users([{"aad_object_id": str(person.aad_object_id), "installed": True}])
    sent_to(person, text="The office is closed.")
    delivery = Delivery.objects.get(recipient=person)
    page = get(teams, f"/inbox/{person.aad_object_id}").data.decode()
    assert "Read up to here" in page and 'value="like"' in page
    assert "form-action 'self'" in get(teams, f"/inbox/{person.aad_object_id}").headers["Content-Security-Policy"]

    pool = urllib3.PoolManager(ca_certs=str(teams.ca_file))
    inbox = f"{teams.url}/inbox/{person.aad_object_id}"
    read = pool.request("POST", f"{inbox}/read", fields={"activity_id": delivery.activity_id}, encode_multipart=False,
                        redirect=False)
    liked = pool.request("POST", f"{inbox}/react", fields={"activity_id": delivery.activity_id, "type": "like"},
                         encode_multipart=False, redirect=False)
    odd = pool.request("POST", f"{inbox}/react", fields={"activity_id": delivery.activity_id, "type": "boo"},
                       encode_multipart=False, redirect=False)
    elsewhere = pool.request("POST", f"{inbox}/read", fields={"activity_id": "12345"}, encode_multipart=False,
                             redirect=False)

    assert (read.status, read.headers["Location"], liked.status) == (303, f"/inbox/{person.aad_object_id}", 303)
    assert (odd.status, elsewhere.status) == (400, 400)
    delivery.refresh_from_db()
    assert delivery.read_at is not None and reactions_from_rows(delivery.campaign_id) == {"like": 1}
