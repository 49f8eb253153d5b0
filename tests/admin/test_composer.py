"""The template composer: the card editor's simple fields, the live preview and "Send a test to me"."""

from __future__ import annotations

import json

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign, MessageTemplate, StaffProfile
from delivery.models import Delivery
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db

ADD = "admin:campaigns_messagetemplate_add"
PREVIEW = "admin:campaigns_messagetemplate_preview"
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}


def card_fields(**fields) -> dict:
    """What the page posts for a card written with the simple fields."""
    return {"name": "Office move", "kind": "adaptive_card", "editor": "design", "text": "", "card": "null", **fields}


def form_errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


# --- Saving -------------------------------------------------------------------------------------------


def test_the_simple_fields_build_the_card_and_are_kept_to_edit_again(comms_client):
    response = comms_client.post(reverse(ADD), card_fields(
        design_title="Hello {{first_name}}", design_body="Floor **3**",
        button_1_label="Floor plan", button_1_url="https://example.com/plan",
        card='{"this is": "ignored while the simple fields lead"',
    ))

    assert response.status_code == 302
    template = MessageTemplate.objects.get()
    assert [element["text"] for element in template.card["body"]] == ["Hello {{first_name}}", "Floor **3**"]
    assert template.card["actions"] == [{"type": "Action.OpenUrl", "title": "Floor plan", "url": "https://example.com/plan"}]
    assert template.design == {"title": "Hello {{first_name}}", "image": "", "body": "Floor **3**",
                               "buttons": [{"label": "Floor plan", "url": "https://example.com/plan"}]}
    page = comms_client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk]))
    form = page.context["adminform"].form
    assert page.context["composer"]["editor"] == "design"
    assert (form.initial["design_title"], form.initial["button_1_url"]) == ("Hello {{first_name}}", "https://example.com/plan")


def test_a_bad_simple_field_is_an_error_on_that_field_and_nothing_is_saved(comms_client):
    response = comms_client.post(reverse(ADD), card_fields(
        design_title="Hi", design_image="http://example.com/a.png", button_2_label="Go", button_2_url="",
    ))

    assert response.status_code == 200
    errors = form_errors(response)
    assert "https://" in errors["design_image"][0]
    assert errors["button_2_url"] == ["A button needs a link."]
    assert "card" not in errors and "__all__" not in errors  # said once, on the fields
    assert not MessageTemplate.objects.exists()


def test_a_card_edited_as_json_forgets_the_simple_fields(comms_client):
    template = factories.template(kind="adaptive_card", text="", card=CARD, design={"body": "Hi {{first_name}}"})

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_change", args=[template.pk]),
        card_fields(name=template.name, editor="json", design_body="stale", card=json.dumps(CARD)),
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.card, template.design) == (CARD, None)
    page = comms_client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk]))
    assert page.context["composer"]["editor"] == "json"


def test_a_card_changed_since_the_simple_fields_made_it_opens_as_json(comms_client):
    template = factories.template(kind="adaptive_card", text="", card=CARD, design={"title": "Something else"})

    page = comms_client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk]))

    assert page.context["composer"]["editor"] == "json"


def test_a_card_written_as_json_is_checked_naming_the_place_of_each_problem(comms_client):
    bad = {"type": "AdaptiveCard", "version": "1.6", "body": [{"type": "Image", "url": "http://example.com/a.png"}]}

    response = comms_client.post(reverse(ADD), card_fields(editor="json", card=json.dumps(bad)))

    assert response.status_code == 200
    assert [problem.split(":")[0] for problem in form_errors(response)["card"]] == ["version", "body[0].url"]
    assert not MessageTemplate.objects.exists()


def test_switching_a_card_to_markdown_on_the_page_drops_the_card(comms_client):
    template = factories.template(kind="adaptive_card", text="", card=CARD, design={"body": "Hi {{first_name}}"})

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_change", args=[template.pk]),
        {"name": template.name, "kind": "markdown", "editor": "design", "text": "Hello", "card": json.dumps(CARD)},
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.kind, template.card, template.design) == ("markdown", None, None)


# --- The page ------------------------------------------------------------------------------------------


def test_the_change_page_loads_the_card_renderer_and_the_composer(comms_client):
    template = factories.template()

    page = comms_client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk])).content.decode()

    for script in ("vendor/adaptivecards/adaptivecards.min.js", "vendor/markdown-it/markdown-it.umd.min.js",
                   "crier/composer.card.js", "crier/composer.js"):
        assert f'src="/static/{script}"' in page
        assert finders.find(script), f"{script} is not among the static files"
    config = json.loads(page.split('<script id="crier-composer" type="application/json">')[1].split("</script>")[0])
    assert config["preview_url"] == reverse(PREVIEW)
    assert ["first_name", "First name"] in config["placeholders"]
    assert 'class="composer-test-send crier-tool-form"' in page


def test_the_preview_picker_offers_the_staff_member_themselves(comms_client, comms_user):
    me = factories.recipient(display_name="Casey Comms")
    StaffProfile.objects.create(user=comms_user, recipient=me)

    page = comms_client.get(reverse(ADD))

    assert page.context["composer"]["people"]["me"]["name"] == "Casey Comms"


def test_a_viewer_sees_the_saved_template_without_the_composer(client, viewer_user):
    client.force_login(viewer_user)
    template = factories.template()

    page = client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk])).content.decode()

    assert 'id="crier-composer"' not in page and "composer.js" not in page
    assert "composer-test-send" not in page


# --- The live preview ----------------------------------------------------------------------------------


def test_the_preview_renders_the_unsaved_card_for_the_chosen_person(comms_client):
    person = factories.recipient(first_name="Zoé", department="Legal")

    response = comms_client.post(reverse(PREVIEW), card_fields(
        name="", design_title="Hello {{first_name}}", design_body="{{department}} moves",
        button_1_label="Desk", button_1_url="https://example.com/{{external_id}}", preview_recipient=person.pk,
    ))

    assert response.status_code == 200
    content = response.json()["activity"]["attachments"][0]["content"]
    assert [element["text"] for element in content["body"]] == ["Hello Zoé", "Legal moves"]
    assert content["actions"][0]["url"] == f"https://example.com/{person.external_id}"
    assert not MessageTemplate.objects.exists()


def test_the_preview_json_escapes_a_name_with_quotes(comms_client):
    person = factories.recipient(first_name='Zoë "Z" \\ <b>')

    response = comms_client.post(reverse(PREVIEW), card_fields(
        editor="json", card=json.dumps(CARD), preview_recipient=person.pk,
    ))

    assert response.status_code == 200
    body = response.json()["activity"]["attachments"][0]["content"]["body"]
    # one text block, nothing injected; in its markdown the backslash and the brackets are escaped
    assert body == [{"type": "TextBlock", "text": 'Hi Zoë "Z" \\\\ \\<b>'}]


def test_the_preview_of_a_markdown_message_uses_the_sample_person_by_default(comms_client):
    response = comms_client.post(
        reverse(PREVIEW), {"kind": "markdown", "editor": "design", "text": "Hi {{first_name}}"}
    )

    assert response.status_code == 200
    assert response.json()["activity"]["text"] == "Hi Alex"
    assert response.json()["recipient"] == "Alex Sample"


def test_the_preview_returns_field_errors_for_json_it_cannot_read(comms_client):
    response = comms_client.post(reverse(PREVIEW), card_fields(editor="json", card='{"type": "AdaptiveCard",'))

    assert response.status_code == 400
    assert response.json() == {"errors": {"card": ["Enter a valid JSON."]}}


def test_the_preview_returns_the_places_of_problems_in_the_card(comms_client):
    bad = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Media", "sources": []}]}

    response = comms_client.post(reverse(PREVIEW), card_fields(editor="json", card=json.dumps(bad)))

    assert response.status_code == 400
    assert response.json()["errors"]["card"][0].startswith("body[0].type: 'Media' is not an element")


def test_the_preview_returns_simple_field_errors_by_field(comms_client):
    response = comms_client.post(reverse(PREVIEW), card_fields(design_body="Hi", button_1_label="Go",
                                                               button_1_url="http://example.com"))

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["button_1_url"]


@pytest.mark.parametrize("who", ["999999", "9" * 40, "²", "Ada"])
def test_the_preview_refuses_a_person_who_is_not_there(comms_client, who):
    response = comms_client.post(reverse(PREVIEW), card_fields(design_body="Hi", preview_recipient=who))

    assert response.status_code == 400
    assert "preview_recipient" in response.json()["errors"]


def test_the_preview_is_for_posts_with_a_csrf_token_from_staff_who_may_view_templates(comms_user, viewer_user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(comms_user)
    assert strict.post(reverse(PREVIEW), card_fields(design_body="Hi")).status_code == 403
    assert strict.get(reverse(PREVIEW)).status_code == 405

    viewer = Client()
    viewer.force_login(viewer_user)
    assert viewer.post(reverse(PREVIEW), card_fields(design_body="Hi")).status_code == 200

    anonymous = Client().post(reverse(PREVIEW), card_fields(design_body="Hi"))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_people_can_be_found_to_preview_for(comms_client):
    wanted = factories.recipient(display_name="Ada Lovelace")
    factories.recipient(display_name="Grace Hopper")

    response = comms_client.get(reverse("admin:campaigns_messagetemplate_preview_people"), {"q": "lovelace"})

    assert [person["id"] for person in response.json()["people"]] == [wanted.pk]


# --- Send a test to me ---------------------------------------------------------------------------------


def test_send_a_test_to_me_sends_the_template_to_my_own_teams_identity(comms_client, comms_user):
    me = factories.recipient(display_name="Casey Comms")
    StaffProfile.objects.create(user=comms_user, recipient=me)
    template = factories.template()

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_test_send", args=[template.pk]), follow=True
    )

    campaign = Campaign.objects.get()
    assert (campaign.kind, campaign.template, campaign.created_by) == (Campaign.Kind.DIRECT, template, comms_user)
    assert list(Delivery.objects.filter(campaign=campaign).values_list("recipient", flat=True)) == [me.pk]
    assert ("success", "Test sent to Casey Comms in Teams.") in messages_of(response)
    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_messagetemplate_change", args=[template.pk])


def test_send_a_test_to_me_without_a_linked_identity_says_how_to_link_one(comms_client):
    template = factories.template()

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_test_send", args=[template.pk]), follow=True
    )

    assert not Campaign.objects.exists()
    [(level, message)] = messages_of(response)
    assert level == "error" and message.startswith("Link your Teams identity first")


def test_a_viewer_cannot_send_tests(client, viewer_user):
    client.force_login(viewer_user)
    template = factories.template()

    response = client.post(reverse("admin:campaigns_messagetemplate_test_send", args=[template.pk]))

    assert response.status_code == 403
    assert not Campaign.objects.exists()


def test_a_post_without_the_composer_script_saves_the_json_box(comms_client):
    template = factories.template(kind="adaptive_card", text="", card=CARD, design={"body": "Hi {{first_name}}"})
    edited = {**CARD, "body": [{"type": "TextBlock", "text": "Bye {{first_name}}"}]}

    response = comms_client.post(
        reverse("admin:campaigns_messagetemplate_change", args=[template.pk]),
        {"name": template.name, "kind": "adaptive_card", "text": "", "card": json.dumps(edited),
         "design_body": "Hi {{first_name}}"},
    )

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.card, template.design) == (edited, None)


def test_a_button_whose_link_host_is_a_placeholder_is_a_form_error_and_nothing_is_saved(comms_client):
    response = comms_client.post(reverse(ADD), card_fields(
        design_title="Hi", button_1_label="Reset", button_1_url="https://{{attributes.host}}/login",
    ))

    assert response.status_code == 200
    assert "host" in form_errors(response)["button_1_url"][0]
    assert not MessageTemplate.objects.exists()


def test_a_json_card_whose_link_host_is_a_placeholder_is_a_form_error_naming_its_place(comms_client):
    bad = {**CARD, "actions": [{"type": "Action.OpenUrl", "title": "Go", "url": "https://{{first_name}}.example.com/"}]}

    response = comms_client.post(reverse(ADD), card_fields(editor="json", card=json.dumps(bad)))

    assert response.status_code == 200
    assert form_errors(response)["card"][0].startswith("actions[0].url: ")
    assert not MessageTemplate.objects.exists()


def test_the_preview_shows_a_job_title_link_as_escaped_text(comms_client):
    person = factories.recipient(job_title="[Reset your password](https://evil.example/login)")

    response = comms_client.post(reverse(PREVIEW), card_fields(
        design_body="Your role: {{job_title}}", preview_recipient=person.pk,
    ))

    assert response.status_code == 200
    body = response.json()["activity"]["attachments"][0]["content"]["body"]
    assert body[0]["text"] == r"Your role: \[Reset your password\](https\:/\/evil\.example/login)"


def test_the_preview_breaks_a_bare_url_and_an_address_in_hr_data(comms_client):
    person = factories.recipient(job_title="Reset at https://evil.example/login", department="admin@evil.example")

    response = comms_client.post(reverse(PREVIEW), card_fields(
        design_body="{{job_title}} / {{department}}", preview_recipient=person.pk,
    ))

    body = response.json()["activity"]["attachments"][0]["content"]["body"]
    assert body[0]["text"] == r"Reset at https\:/\/evil\.example/login / admin\@evil\.example"
