"""Injection-shaped input: refused with the field named where a field has a shape, stored verbatim
and harmless where it is free text, never a server error."""

import pytest

from campaigns.models import Recipient
from campaigns.rendering import markdown_escape
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db

SQL = "x' OR '1'='1'; DROP TABLE campaigns_recipient; --"
MARKUP = '<script>alert("hi")</script>{{first_name}}"}]'


@pytest.mark.parametrize(
    ("field", "value"),
    [("country", SQL), ("aad_object_id", SQL), ("time_zone", "../../etc/passwd"), ("start_date", SQL),
     ("external_id", "a\x00b")],
)
def test_shaped_fields_refuse_injection_with_the_field_and_row_named(api, field, value):
    row = {"external_id": "E1", field: value}
    response = api.post("/api/v1/recipients/bulk/", {"recipients": [row]}, format="json")

    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (0, field)
    assert not Recipient.objects.exists()


def test_free_text_keeps_hostile_strings_verbatim_and_renders_them_inert(api):
    response = api.post("/api/v1/recipients/bulk/", {"recipients": [
        {"external_id": "E1", "first_name": MARKUP, "department": SQL}]}, format="json")
    template = factories.template(kind="adaptive_card", text="", card={
        "type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]})

    preview = api.get(f"/api/v1/templates/{template.pk}/preview/?recipient=E1")

    assert response.status_code == 200 and response.json()["errors"] == []
    person = Recipient.objects.get(external_id="E1")
    assert (person.first_name, person.department) == (MARKUP, SQL)
    assert Recipient.objects.count() == 1  # the table is still there
    card = preview.json()["activity"]["attachments"][0]["content"]
    # one text block, nothing injected, and its markdown escaped
    assert card["body"] == [{"type": "TextBlock", "text": f"Hi {markdown_escape(MARKUP)}"}]


@pytest.mark.parametrize("query", [f"?country={SQL}", f"?department={SQL}", "?is_active=1;DROP", f"?cursor={SQL}"])
def test_hostile_query_strings_get_an_answer_not_an_error(api, query):
    response = api.get(f"/api/v1/recipients/{query}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert error_of(response)["fields"]


def test_a_nul_character_anywhere_in_a_body_is_refused_with_its_place_named(api):
    factories.template()
    response = api.post("/api/v1/messages/", {"template": 1, "category": "it\x00", "recipients": ["a"]}, format="json")
    nested = api.post("/api/v1/audiences/", {"name": "A", "kind": "rules",
                                             "rules": [{"field": "department", "op": "eq", "value": "x\x00"}]}, format="json")
    assert response.status_code == 400 and "category" in error_of(response)["fields"]
    assert nested.status_code == 400 and "rules[0].value" in error_of(nested)["fields"]


def deeply_nested(depth: int = 5000) -> str:
    """About 10 KB of JSON nested deeper than Python's recursion limit."""
    return '{"recipients": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    "path", ["/api/v1/messages/", "/api/v1/recipients/bulk/", "/api/v1/templates/", "/api/v1/audiences/"]
)
def test_deeply_nested_json_is_a_400_in_the_error_shape(api, path):
    response = api.generic("POST", path, deeply_nested(), content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"
    assert "nested" in error_of(response)["message"]


def test_json_nested_past_the_limit_but_within_the_recursion_limit_is_refused(api):
    response = api.generic("POST", "/api/v1/messages/", deeply_nested(depth=200), content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_an_adaptive_card_nested_as_cards_are_is_still_accepted(api):
    inner = {"type": "TextBlock", "text": "Hi {{first_name}}"}
    for _ in range(8):
        inner = {"type": "Container", "items": [inner]}
    card = {"type": "AdaptiveCard", "version": "1.4", "body": [inner]}
    response = api.post("/api/v1/templates/", {"name": "Nested", "kind": "adaptive_card", "card": card}, format="json")

    assert response.status_code == 201, response.json()
