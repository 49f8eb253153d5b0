import pytest

from campaigns.models import Category, MessageTemplate
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db
CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name|there}}"}]}


def test_template_is_created_read_and_edited(api):
    created = api.post(
        "/api/v1/templates/",
        {"name": "Welcome", "kind": "adaptive_card", "text": "Welcome", "card": CARD},
        format="json",
    )
    assert created.status_code == 201, created.json()
    url = f"/api/v1/templates/{created.json()['id']}/"

    edited = api.patch(url, {"text": "Welcome aboard"}, format="json")

    assert edited.status_code == 200
    assert api.get(url).json() | {"created_at": None, "updated_at": None} == {
        "id": created.json()["id"], "name": "Welcome", "kind": "adaptive_card", "text": "Welcome aboard", "card": CARD,
        "direct_approved_at": None, "created_at": None, "updated_at": None,
    }


def test_template_with_a_bad_card_is_refused_naming_card(api):
    response = api.post(
        "/api/v1/templates/", {"name": "Broken", "kind": "adaptive_card", "card": {"type": "Card"}}, format="json"
    )

    assert response.status_code == 400
    assert "AdaptiveCard" in error_of(response)["fields"]["card"][0]
    assert not MessageTemplate.objects.exists()


def test_template_with_an_unknown_placeholder_is_refused_naming_text(api):
    response = api.post("/api/v1/templates/", {"name": "Typo", "text": "Hello {{frist_name}}"}, format="json")

    assert response.status_code == 400
    assert "Unknown placeholder {{frist_name}}" in error_of(response)["fields"]["text"][0]


def test_template_edit_is_checked_against_the_stored_kind(api):
    template = factories.template(kind="markdown", text="Hello")

    response = api.patch(f"/api/v1/templates/{template.pk}/", {"card": CARD}, format="json")

    assert response.status_code == 400
    assert "card" in error_of(response)["fields"]
    template.refresh_from_db()
    assert template.card is None


def test_template_used_by_a_campaign_cannot_be_deleted(api):
    campaign = factories.campaign()
    unused = factories.template()

    in_use = api.delete(f"/api/v1/templates/{campaign.template_id}/")
    deleted = api.delete(f"/api/v1/templates/{unused.pk}/")

    assert in_use.status_code == 409
    assert error_of(in_use)["code"] == "in_use"
    assert deleted.status_code == 204
    assert list(MessageTemplate.objects.values_list("pk", flat=True)) == [campaign.template_id]


def test_categories_are_managed_by_slug(api):
    created = api.post(
        "/api/v1/categories/", {"slug": "it-outages", "name": "IT outages", "mandatory": True}, format="json"
    )
    duplicate = api.post("/api/v1/categories/", {"slug": "it-outages", "name": "Again"}, format="json")
    renamed = api.patch("/api/v1/categories/it-outages/", {"description": "When things break"}, format="json")

    assert created.status_code == 201
    assert created.json() == {"slug": "it-outages", "name": "IT outages", "description": "", "mandatory": True}
    assert duplicate.status_code == 400 and "slug" in error_of(duplicate)["fields"]
    assert renamed.json()["description"] == "When things break"
    assert api.delete("/api/v1/categories/it-outages/").status_code == 204
    assert not Category.objects.exists()


def test_template_with_a_link_whose_host_is_a_placeholder_is_refused_naming_the_place(api):
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi"}],
            "actions": [{"type": "Action.OpenUrl", "title": "Reset", "url": "https://{{attributes.host}}/login"}]}

    response = api.post("/api/v1/templates/", {"name": "Reset", "kind": "adaptive_card", "card": card}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["fields"]["card"][0].startswith("actions[0].url: ")
    assert not MessageTemplate.objects.exists()


def test_template_preview_shows_a_job_title_link_as_escaped_text(api):
    factories.recipient(external_id="e-1", job_title="[Reset your password](https://evil.example/login)")
    template = factories.template(text="Your title: {{job_title}}")

    response = api.get(f"/api/v1/templates/{template.pk}/preview/?recipient=e-1")

    assert response.status_code == 200
    assert response.json()["activity"]["text"] == r"Your title: \[Reset your password\](https\:/\/evil\.example/login)"


@pytest.mark.parametrize("card", [False, 0, "", []])
def test_a_markdown_template_with_any_card_value_but_none_is_refused_naming_card(api, card):
    response = api.post("/api/v1/templates/", {"name": "T", "kind": "markdown", "text": "Hi", "card": card}, format="json")

    assert response.status_code == 400
    assert "card" in error_of(response)["fields"]
    assert not MessageTemplate.objects.exists()


@pytest.mark.parametrize("kind", ["announcement", "direct"])
@pytest.mark.parametrize("status", ["running", "paused"])
def test_it_refuses_to_edit_a_template_a_running_or_paused_campaign_sends(api, kind, status):
    template = factories.template(text="Town hall at 3")
    factories.campaign(template=template, kind=kind, status=status)

    response = api.patch(f"/api/v1/templates/{template.pk}/", {"text": "Town hall cancelled"}, format="json")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "template_in_use"
    assert "cancel" in error["message"] and "Edit the sent message" in error["message"]
    template.refresh_from_db()
    assert template.text == "Town hall at 3"


def test_a_welcome_campaigns_template_stays_editable_while_it_runs(api):
    template = factories.template(text="Welcome")
    factories.campaign(template=template, kind="welcome", status="running")

    response = api.patch(f"/api/v1/templates/{template.pk}/", {"text": "Welcome aboard"}, format="json")

    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("status", ["completed", "cancelled", "draft"])
def test_a_template_whose_campaigns_are_not_sending_stays_editable(api, status):
    template = factories.template(text="Town hall at 3")
    factories.campaign(template=template, status=status)

    response = api.patch(f"/api/v1/templates/{template.pk}/", {"text": "Town hall at 4"}, format="json")

    assert response.status_code == 200, response.json()


def test_the_schema_says_a_template_in_use_cannot_be_edited():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = schema["paths"]["/api/v1/templates/{id}/"]

    for method in ("put", "patch"):
        assert "template_in_use" in operations[method]["responses"]["409"]["description"]


@pytest.mark.parametrize("text", [
    "[Reset][1]\n\n[1]: https://{{attributes.portal}}/login",
    "Portal: https://{{attributes.portal}}/login",
    "Go <https://{{attributes.portal}}/login>",
    '<a href="https://{{attributes.portal}}/">Reset</a>',
])
def test_a_markdown_message_whose_text_takes_a_links_host_from_a_placeholder_is_a_400_naming_text(api, text):
    response = api.post("/api/v1/templates/", {"name": "Reset", "text": text}, format="json")

    assert response.status_code == 400
    assert "host" in error_of(response)["fields"]["text"][0]
    assert not MessageTemplate.objects.exists()
