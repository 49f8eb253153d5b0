"""The audience editor: the rule builder's page, the live count and sample, and people added from a
CSV file."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns.admin import audiences
from campaigns.models import Audience
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db

PREVIEW = "admin:campaigns_audience_preview"
SALES = [{"field": "department", "op": "eq", "value": "Sales"}]


def form_errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


def editor_settings(page) -> dict:
    html = page.content.decode()
    start = html.index('<script id="crier-audience-editor" type="application/json">')
    return json.loads(html[html.index(">", start) + 1:html.index("</script>", start)])


def change(client, audience: Audience, *, csv: str | None = None, action: str = "include", **fields):
    data = {
        "name": audience.name,
        "kind": audience.kind,
        "rules": json.dumps(audience.rules),
        "members": [p.pk for p in audience.members.all()],
        "excluded": [p.pk for p in audience.excluded.all()],
        "people_file_action": action,
        "_continue": "1",
        **fields,
    }
    if csv is not None:
        data["people_file"] = SimpleUploadedFile("people.csv", csv.encode(), content_type="text/csv")
    return client.post(reverse("admin:campaigns_audience_change", args=[audience.pk]), data)


# --- The page ----------------------------------------------------------------------------------------


def test_audience_page_loads_the_rule_editor_with_its_settings(comms_client):
    factories.recipient(department="Sales", location="Paris")
    audience = factories.audience(kind="rules", rules=SALES)

    page = comms_client.get(reverse("admin:campaigns_audience_change", args=[audience.pk]))

    html = page.content.decode()
    assert "crier/audience-rules.js" in html
    assert "crier/audience-rules.css" in html
    assert 'id="id_rules"' in html  # the JSON field stays: the editor writes into it
    settings = editor_settings(page)
    assert settings["preview_url"] == reverse(PREVIEW)
    assert settings["audience"] == audience.pk
    assert ["department", "Department"] in settings["fields"]
    assert settings["suggestions"]["department"] == ["Sales"]
    assert settings["suggestions"]["location"] == ["Paris"]


def test_new_audience_page_has_the_editor_and_the_csv_upload(comms_client):
    page = comms_client.get(reverse("admin:campaigns_audience_add"))

    html = page.content.decode()
    assert editor_settings(page)["audience"] is None
    assert 'enctype="multipart/form-data"' in html
    assert "Add people from a CSV file" in html


def test_a_viewer_sees_the_audience_without_the_editor_or_the_upload(client, viewer_user):
    client.force_login(viewer_user)
    audience = factories.audience(kind="rules", rules=SALES)

    html = client.get(reverse("admin:campaigns_audience_change", args=[audience.pk])).content.decode()

    assert "crier-audience-editor" not in html
    assert "people_file" not in html


# --- The live count and sample -----------------------------------------------------------------------


def test_preview_answers_the_count_and_a_sample_of_the_definition_posted(comms_client):
    ann = factories.recipient(first_name="Ann", last_name="Lee", department="Sales")
    bob = factories.recipient(first_name="Bob", last_name="Ray", department="Legal")
    cid = factories.recipient(first_name="Cid", last_name="Moe", department="Sales")

    response = comms_client.post(reverse(PREVIEW), {
        "kind": "rules", "rules": json.dumps(SALES), "members": f"{bob.pk}", "excluded": f"{cid.pk}",
    })

    assert response.status_code == 200
    assert response.json() == {"count": 2, "sample": ["Ann Lee (Sales)", "Bob Ray (Legal)"], "errors": [], "note": ""}
    assert ann.pk < bob.pk


def test_preview_of_an_invalid_rule_answers_the_validation_message_not_a_count(comms_client):
    response = comms_client.post(reverse(PREVIEW), {
        "kind": "rules", "rules": json.dumps([{"field": "start_date", "op": "gte", "value": "next week"}]),
        "members": "", "excluded": "",
    })

    assert response.status_code == 200
    assert response.json() == {
        "count": None, "sample": [], "errors": ["Rule 1: start_date values are dates (YYYY-MM-DD)."], "note": "",
    }


@pytest.mark.parametrize(
    "data, error",
    [
        ({"kind": "rules", "rules": "[{field: department}"}, "Rules: Enter a valid JSON."),
        ({"kind": "rules", "rules": "[]"}, "A rules audience needs at least one rule."),
        ({"kind": "sometimes", "rules": "[]"}, "Kind: Select a valid choice."),
        ({"kind": "static", "rules": "[]", "members": "1,two"}, "Include: ids are whole numbers."),
        ({"kind": "rules", "rules": "[" * 100_000 + "]" * 100_000}, "Rules: Enter a valid JSON."),
        ({"kind": "rules", "rules": json.dumps([{"field": "start_date", "op": "eq", "value": 20240101}])},
         "Rule 1: start_date values are dates (YYYY-MM-DD)."),
        ({"kind": "static", "rules": "[]", "members": "99999999999999999999999", "audience": "1"}, None),
        ({"kind": "rules", "rules": json.dumps([{"field": "country", "op": "in", "value": [1, 2]}])}, None),
    ],
)
def test_preview_of_malformed_input_answers_an_error_never_a_server_error(comms_client, data, error):
    response = comms_client.post(reverse(PREVIEW), data)

    assert response.status_code == 200
    errors = response.json()["errors"]
    if error is None:
        assert response.json()["count"] == 0
    else:
        assert any(message.startswith(error) for message in errors), errors


def test_preview_saves_nothing(comms_client):
    person = factories.recipient()
    audience = factories.audience(kind="static")
    audience.members.add(person)

    response = comms_client.post(reverse(PREVIEW), {
        "kind": "rules", "rules": json.dumps(SALES), "members": "", "excluded": f"{person.pk}", "audience": audience.pk,
    })

    assert response.json()["count"] == 0
    audience.refresh_from_db()
    assert (audience.kind, audience.rules) == ("static", [])
    assert list(audience.members.all()) == [person]
    assert not audience.excluded.exists()
    assert Audience.objects.count() == 1


def test_preview_is_a_post(comms_client):
    assert comms_client.get(reverse(PREVIEW)).status_code == 405


def test_preview_needs_the_csrf_token(comms_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(comms_user)

    assert client.post(reverse(PREVIEW), {"kind": "everyone"}).status_code == 403


def test_preview_is_for_staff_who_may_view_audiences(client, viewer_user):
    outsider = User.objects.create_user("olly", "olly@example.com", "not-a-superuser", is_staff=True)
    client.force_login(outsider)
    assert client.post(reverse(PREVIEW), {"kind": "everyone"}).status_code == 403

    client.force_login(viewer_user)
    assert client.post(reverse(PREVIEW), {"kind": "everyone"}).json()["count"] == 0


# --- People from a CSV file --------------------------------------------------------------------------


def test_csv_upload_adds_the_people_to_the_include_list(comms_client):
    already = factories.recipient(external_id="E-0")
    ann = factories.recipient(external_id="E-1", department="Legal")
    bob = factories.recipient(email="bob@example.com", department="Legal")
    audience = factories.audience(kind="rules", rules=SALES)
    audience.members.add(already)

    response = change(comms_client, audience, csv="External_ID,Email\nE-1,\n,BOB@example.com\n")

    assert response.status_code == 302
    assert set(audience.members.all()) == {already, ann, bob}
    assert ("success", "2 people from people.csv added to the include list.") in messages_of(
        comms_client.get(response.url)
    )


def test_csv_upload_in_exclude_mode_adds_the_people_to_the_exclude_list(comms_client):
    ann = factories.recipient(external_id="E-1")
    audience = factories.audience(kind="everyone")

    response = change(comms_client, audience, csv="external_id\nE-1\n", action="exclude")

    assert response.status_code == 302
    assert list(audience.excluded.all()) == [ann]
    assert not audience.members.exists()


def test_csv_upload_warns_when_people_included_are_also_excluded(comms_client):
    ann = factories.recipient(external_id="E-1")
    audience = factories.audience(kind="static")
    audience.excluded.add(ann)

    response = change(comms_client, audience, csv="external_id\nE-1\n")

    assert ("warning", "1 of them is also on the exclude list, which wins: they are not selected.") in messages_of(
        comms_client.get(response.url)
    )


def test_csv_upload_with_unknown_people_is_a_form_error_listing_them_and_saves_nothing(comms_client):
    factories.recipient(external_id="E-1")
    audience = factories.audience(kind="rules", rules=SALES)

    response = change(comms_client, audience, csv="external_id\nE-1\nE-404\n\nE-405\n", name="Renamed")

    assert response.status_code == 200
    error = " ".join(form_errors(response)["people_file"])
    assert "2 rows of the file match nobody (line 3: E-404; line 5: E-405)" in error
    audience.refresh_from_db()
    assert audience.name != "Renamed"
    assert not audience.members.exists()


def test_csv_upload_without_an_external_id_or_email_column_is_a_form_error(comms_client):
    factories.recipient(external_id="E-1")
    audience = factories.audience(kind="static")

    response = change(comms_client, audience, csv="id;name\nE-1;Ann\n")

    assert response.status_code == 200
    assert "The file needs an external_id or email column" in form_errors(response)["people_file"][0]
    assert not audience.members.exists()


def test_rules_nested_too_deep_to_read_are_a_form_error_not_a_server_error(comms_client):
    audience = factories.audience(kind="rules", rules=SALES)

    response = change(comms_client, audience, rules="[" * 100_000 + "]" * 100_000)

    assert response.status_code == 200
    assert form_errors(response)["rules"] == ["Enter a valid JSON."]


def test_a_new_audience_gets_its_people_from_a_csv_file(comms_client):
    ann = factories.recipient(external_id="E-1")
    response = comms_client.post(reverse("admin:campaigns_audience_add"), {
        "name": "From HR", "kind": "static", "rules": "[]", "people_file_action": "include",
        "people_file": SimpleUploadedFile("hr.csv", b"external_id\nE-1\n", content_type="text/csv"),
    })

    assert response.status_code == 302
    assert list(Audience.objects.get(name="From HR").members.all()) == [ann]


def test_a_long_include_list_is_shown_as_a_count_and_the_page_still_saves(comms_client, monkeypatch):
    monkeypatch.setattr(audiences, "EDITABLE_LIST_SIZE", 2)
    people = [factories.recipient(external_id=f"E-{n}") for n in range(3)]
    audience = factories.audience(kind="static")
    audience.members.set(people)

    page = comms_client.get(reverse("admin:campaigns_audience_change", args=[audience.pk]))
    assert "3 people: too many to edit here" in page.content.decode()
    assert "members" not in page.context["adminform"].form.fields

    response = change(comms_client, audience, csv="external_id\nE-0\nE-1\n", action="remove", members=[], name="Kept")

    assert response.status_code == 302
    assert list(audience.members.all()) == [people[2]]  # the posted (empty) list does not replace it
    audience.refresh_from_db()
    assert audience.name == "Kept"
