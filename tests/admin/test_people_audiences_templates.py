"""Recipients, audiences, templates and opt-outs as a comms user edits them."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bots.models import TeamsAddress
from campaigns.models import Audience, MessageTemplate, OptOut, Recipient
from tests import factories

pytestmark = pytest.mark.django_db


def form_errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


def test_recipient_list_shows_each_persons_teams_state_in_a_constant_number_of_queries(comms_client):
    url = reverse("admin:campaigns_recipient_changelist")
    installed = factories.recipient()
    TeamsAddress.objects.create(aad_object_id=installed.aad_object_id, state=TeamsAddress.State.BLOCKED)
    with CaptureQueriesContext(connection) as one:
        comms_client.get(url)
    for _ in range(5):
        factories.recipient()
    with CaptureQueriesContext(connection) as six:
        response = comms_client.get(url)

    assert len(six) == len(one)
    assert response.context["cl"].result_count == 6
    assert "Blocked the bot" in response.content.decode()
    assert "No address yet" in response.content.decode()


def test_recipient_list_filters_people_teams_cannot_reach_yet(comms_client):
    reached = factories.recipient()
    TeamsAddress.objects.create(aad_object_id=reached.aad_object_id, state=TeamsAddress.State.INSTALLED)
    waiting = factories.recipient()

    response = comms_client.get(reverse("admin:campaigns_recipient_changelist"), {"teams": "none"})

    assert list(response.context["cl"].result_list) == [waiting]


def test_recipient_page_shows_their_teams_address_and_opt_outs(comms_client):
    person = factories.recipient()
    TeamsAddress.objects.create(aad_object_id=person.aad_object_id, state=TeamsAddress.State.INSTALLED)
    OptOut.objects.create(recipient=person, category=factories.category(name="Town halls"), source="typed_stop")

    page = comms_client.get(reverse("admin:campaigns_recipient_change", args=[person.pk])).content.decode()

    assert "Installed" in page
    assert "Town halls" in page
    assert "Typed &quot;stop&quot;" in page


def test_invalid_audience_rules_are_a_form_error_on_the_rules_field_and_nothing_is_saved(comms_client):
    response = comms_client.post(
        reverse("admin:campaigns_audience_add"),
        {"name": "Payroll", "kind": "rules", "rules": json.dumps([{"field": "salary", "op": "eq", "value": "high"}])},
    )

    assert response.status_code == 200
    assert "unknown field 'salary'" in " ".join(form_errors(response)["rules"])
    assert not Audience.objects.exists()


def test_rules_that_are_not_json_are_a_form_error_and_are_shown_back_as_typed(comms_client):
    response = comms_client.post(
        reverse("admin:campaigns_audience_add"), {"name": "Typo", "kind": "rules", "rules": "[{field: department}"}
    )

    assert response.status_code == 200
    assert form_errors(response)["rules"][0] == "Enter a valid JSON."
    assert "[{field: department}" in response.content.decode()
    assert not Audience.objects.exists()


def test_audience_page_shows_how_many_people_it_selects(comms_client):
    factories.recipient(department="Sales", country="FR")
    factories.recipient(department="Sales", country="DE")
    factories.recipient(department="Legal", country="FR")
    response = comms_client.post(
        reverse("admin:campaigns_audience_add"),
        {"name": "French sales", "kind": "rules", "rules": json.dumps(
            [{"field": "department", "op": "eq", "value": "Sales"}, {"field": "country", "op": "eq", "value": "fr"}]
        ), "_continue": "1"},
    )
    audience = Audience.objects.get(name="French sales")
    assert response.status_code == 302

    page = comms_client.get(reverse("admin:campaigns_audience_change", args=[audience.pk]))

    assert "People it selects now" in page.content.decode()
    assert page.context["adminform"].form.instance == audience
    assert '<div class="readonly">1</div>' in page.content.decode()


def test_invalid_card_is_a_form_error_on_the_card_field_and_nothing_is_saved(comms_client):
    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_add"),
        {"name": "Bad card", "kind": "adaptive_card", "text": "", "card": json.dumps({"type": "Card", "body": []})},
    )

    assert response.status_code == 200
    assert form_errors(response)["card"] == ['An Adaptive Card needs "type": "AdaptiveCard".']
    assert not MessageTemplate.objects.exists()


def test_unknown_placeholder_is_a_form_error_on_the_text(comms_client):
    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_add"), {"name": "Hi", "kind": "markdown", "text": "Hi {{salary}}"}
    )

    assert response.status_code == 200
    assert "Unknown placeholder {{salary}}" in form_errors(response)["text"][0]
    assert not MessageTemplate.objects.exists()


def test_template_preview_fills_in_the_first_active_person_and_escapes_it(comms_client):
    factories.recipient(first_name="Gone", is_active=False)
    factories.recipient(first_name="<b>Zoé</b>")
    template = factories.template(text="Hello {{first_name}}")

    page = comms_client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk])).content.decode()

    # escaped as markdown (a backslash, shown as \\ in the JSON), then as HTML
    assert r"Hello \\&lt;b&gt;Zoé\\&lt;/b&gt;" in page
    assert "<b>Zoé</b>" not in page
    assert "Gone" not in page


def test_opt_out_added_in_the_admin_says_so_by_default(comms_client):
    person = factories.recipient()
    add_page = comms_client.get(reverse("admin:campaigns_optout_add"))
    assert add_page.context["adminform"].form.initial["source"] == OptOut.Source.ADMIN

    response = comms_client.post(
        reverse("admin:campaigns_optout_add"),
        {"recipient": person.pk, "category": "", "source": "admin", "note": "Asked HR"},
    )

    assert response.status_code == 302
    opt_out = OptOut.objects.get()
    assert (opt_out.recipient, opt_out.category, opt_out.source, opt_out.note) == (person, None, "admin", "Asked HR")


def test_a_second_opt_out_from_everything_is_a_form_error(comms_client):
    person = factories.recipient()
    OptOut.objects.create(recipient=person, source=OptOut.Source.TYPED_STOP)

    response = comms_client.post(
        reverse("admin:campaigns_optout_add"), {"recipient": person.pk, "category": "", "source": "admin"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert OptOut.objects.count() == 1


def test_comms_user_finds_people_to_add_to_an_audience_by_name(comms_client):
    wanted = factories.recipient(display_name="Ada Lovelace")
    factories.recipient(display_name="Grace Hopper")

    response = comms_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "campaigns", "model_name": "audience", "field_name": "members", "term": "lovelace"},
    )

    assert response.status_code == 200
    assert [result["id"] for result in response.json()["results"]] == [str(wanted.pk)]


def test_an_oversized_attribute_is_a_form_error_naming_it_and_nothing_is_saved(comms_client):
    response = comms_client.post(reverse("admin:campaigns_recipient_add"), {
        "external_id": "E9", "is_active": "on",
        "attributes": json.dumps({"site": "Paris", "bio": "x" * 1_000_000, "cost center": "A1"}),
    })

    assert response.status_code == 200
    errors = form_errors(response)["attributes"]
    assert errors[0].startswith("bio: 1000000 characters; an attribute holds at most 1000")
    assert errors[1].startswith("cost center: A key is 1 to 64 letters")
    assert not Recipient.objects.exists()


def test_attributes_within_bounds_are_saved_from_the_admin(comms_client):
    response = comms_client.post(reverse("admin:campaigns_recipient_add"), {
        "external_id": "E9", "is_active": "on", "attributes": json.dumps({"site": "Paris", "bio": "b" * 1000}),
    })

    assert response.status_code == 302
    assert Recipient.objects.get().attributes == {"site": "Paris", "bio": "b" * 1000}


@pytest.mark.parametrize("status", ["running", "paused"])
def test_a_template_a_running_or_paused_campaign_sends_cannot_be_edited_in_the_admin(comms_client, status):
    template = factories.template(text="Town hall at 3")
    factories.campaign(template=template, status=status)

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_change", args=[template.pk]),
        {"name": template.name, "kind": "markdown", "editor": "json", "text": "Town hall cancelled", "card": "null"},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert any("Edit the sent message" in error for error in errors), errors
    template.refresh_from_db()
    assert template.text == "Town hall at 3"
