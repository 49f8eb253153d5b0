"""The campaign form says, before it is saved, how many people the chosen audience reaches today and
what the chosen template's message looks like, from the live endpoint its script asks."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from delivery import services
from tests import factories

pytestmark = pytest.mark.django_db

LIVE = "admin:campaigns_campaign_live"


def live(client, **params):
    return client.get(reverse(LIVE), params)


def test_the_form_carries_the_live_panel_and_its_scripts_with_no_inline_script(comms_client):
    page = comms_client.get(reverse("admin:campaigns_campaign_add")).content.decode()

    assert 'id="campaign-live"' in page
    assert f'"url": "{reverse(LIVE)}"' in page  # in the json_script holding its settings
    assert "crier/campaign-form.js" in page and "crier/card-preview.js" in page
    assert "vendor/adaptivecards/adaptivecards.min.js" in page
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    inline = [body for attrs, body in scripts if body.strip() and 'type="application/json"' not in attrs]
    assert inline == []


def test_it_counts_the_chosen_audience_and_draws_the_message_for_its_first_person(comms_client):
    dana = factories.recipient(first_name="Dana", department="Lab")
    eli = factories.recipient(first_name="Eli", department="Lab")
    factories.recipient(first_name="Fay", department="Sales")
    lab = factories.audience(name="Lab", kind="rules", rules=[{"field": "department", "op": "eq", "value": "Lab"}])
    template = factories.template(text="Hello {{first_name}}: **3rd floor lab** opens Monday.")

    answer = live(comms_client, audience=lab.pk, template=template.pk, kind="announcement").json()

    assert answer["reach"]["count"] == 2
    assert answer["reach"]["text"] == "2 people in “Lab” today."
    assert answer["reach"]["sample"] == [f"Dana {dana.last_name} (Lab)", f"Eli {eli.last_name} (Lab)"]
    assert answer["message"]["recipient"] == str(dana)
    assert answer["message"]["activity"]["text"] == "Hello Dana: **3rd floor lab** opens Monday."


def test_no_audience_means_everyone_active_and_no_template_asks_for_one(comms_client):
    factories.recipient()
    factories.recipient(is_active=False)

    answer = live(comms_client, audience="", template="", kind="announcement").json()

    assert answer["reach"]["text"] == "1 person: everyone active today."
    assert answer["message"] == {"error": "Choose a template to see its message."}


def test_a_welcome_campaign_says_it_reaches_people_as_they_arrive(comms_client):
    factories.recipient()

    answer = live(comms_client, kind="welcome").json()

    assert answer["reach"]["text"] == (
        "1 person: everyone active today. A welcome campaign greets each new starter among them as they arrive."
    )


@pytest.mark.parametrize("params", [{"audience": "1; DROP"}, {"template": "-3"}, {"audience": "99999"},
                                    {"template": "99999999999999999999999"}, {"kind": "<b>"}])
def test_bad_or_unknown_choices_are_an_error_naming_the_field_not_a_server_error(comms_client, params):
    response = live(comms_client, **params)

    assert response.status_code == 400
    field = next(iter(params))
    assert list(response.json()["error"]["fields"]) == [field]


def test_people_s_names_stay_hidden_from_staff_who_may_not_see_people(client, django_user_model):
    from django.contrib.auth.models import Permission

    reader = django_user_model.objects.create_user("reader", "r@example.com", "x", is_staff=True)
    reader.user_permissions.add(*Permission.objects.filter(codename__in=["view_campaign", "view_messagetemplate"]))
    client.force_login(reader)
    factories.recipient(first_name="Dana")
    template = factories.template(text="Hello {{first_name}}")

    answer = live(client, template=template.pk).json()

    assert answer["reach"]["count"] == 1 and answer["reach"]["sample"] == []
    assert answer["message"]["activity"]["text"] == "Hello Alex"  # the sample person, not Dana


def test_someone_who_may_not_see_campaigns_gets_nothing(client, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", "n@example.com", "x", is_staff=True)
    client.force_login(nobody)

    assert live(client).status_code == 403


def test_a_launched_campaign_s_page_has_no_live_panel(comms_client):
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert 'id="campaign-live"' not in page


def test_the_form_warns_while_typing_a_name_another_campaign_has(comms_client):
    other = factories.campaign(name="Town hall")
    mine = factories.campaign(name="Town hall draft")

    answer = live(comms_client, name=" town HALL", campaign=mine.pk).json()
    own = live(comms_client, name="Town hall", campaign=other.pk).json()
    fresh = live(comms_client, name="Something new").json()

    assert answer["name_warning"] == (
        f"Another campaign is also called “Town hall” (#{other.pk}): a different name tells them apart in lists "
        "and reports."
    )
    assert own["name_warning"] == "" and fresh["name_warning"] == ""


def test_a_direct_message_says_whom_it_reaches_instead_of_counting_an_audience(comms_client):
    factories.recipient()

    answer = live(comms_client, kind="direct").json()

    assert answer["reach"]["text"] == (
        "A direct message reaches the people named when it is sent through the API: it is not launched from here."
    )


def test_a_template_or_audience_the_staff_member_may_not_see_is_not_shown(client, django_user_model):
    from django.contrib.auth.models import Permission

    reader = django_user_model.objects.create_user("reader", "r@example.com", "x", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(reader)
    template = factories.template(text="Salary review: {{first_name}}")
    lab = factories.audience(name="Lab")

    assert live(client, template=template.pk).status_code == 403
    assert live(client, audience=lab.pk).status_code == 403


def test_a_name_holding_a_nul_or_far_too_long_is_checked_without_a_server_error(comms_client):
    factories.campaign(name="Town hall")

    assert live(comms_client, name="Town\x00 hall").json()["name_warning"] == ""
    assert live(comms_client, name="x" * 100_000).json()["name_warning"] == ""


def test_typing_the_name_answers_only_the_name_warning_without_counting_or_rendering(comms_client):
    from unittest import mock

    from campaigns.admin import live as live_module

    other = factories.campaign(name="Town hall")
    lab = factories.audience(kind="static")

    with mock.patch.object(live_module, "audience_recipients", wraps=live_module.audience_recipients) as counted, \
            mock.patch.object(live_module, "compile_message", wraps=live_module.compile_message) as rendered:
        answer = live(comms_client, only="name", name="Town hall", audience=lab.pk, template=other.template_id).json()

    assert answer == {"name_warning": (
        f"Another campaign is also called “Town hall” (#{other.pk}): a different name tells them apart in lists "
        "and reports."
    )}
    assert not counted.called and not rendered.called


def test_the_form_script_asks_only_for_the_name_warning_while_the_name_is_typed():
    from pathlib import Path

    from django.conf import settings

    script = (Path(settings.BASE_DIR) / "campaigns/static/crier/campaign-form.js").read_text()

    assert 'typing = window.setTimeout(() => refresh("name"), 400)' in script
    assert 'name.addEventListener("change", () => refresh("name"))' in script
