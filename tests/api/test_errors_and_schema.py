import re

import pytest
import yaml
from django.core.management import call_command

from campaigns.models import Category, MessageTemplate
from tests.api.helpers import error_of


@pytest.mark.django_db
def test_malformed_json_is_a_400_in_the_error_shape(api):
    response = api.post("/api/v1/categories/", '{"slug": "news",', content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


@pytest.mark.django_db
def test_a_body_that_is_not_an_object_is_refused(api):
    response = api.post("/api/v1/categories/", ["news"], format="json")

    assert response.status_code == 400
    assert "Expected a dictionary" in error_of(response)["message"]


@pytest.mark.django_db
def test_unknown_fields_in_a_create_body_are_refused_naming_them(api):
    response = api.post(
        "/api/v1/categories/", {"slug": "news", "name": "News", "colour": "red", "mandtory": True}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"colour": ["Unknown field."], "mandtory": ["Unknown field."]}
    assert not Category.objects.exists()


@pytest.mark.django_db
def test_a_wrong_type_is_refused_naming_the_field(api):
    response = api.post(
        "/api/v1/templates/", {"name": "T", "kind": "markdown", "text": {"not": "text"}}, format="json"
    )

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["text"]
    assert not MessageTemplate.objects.exists()


@pytest.mark.django_db
def test_an_unknown_id_is_a_404_in_the_error_shape(api):
    response = api.get("/api/v1/templates/424242/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    schema_file = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    schema = yaml.safe_load(schema_file.read_text())
    assert "/api/v1/recipients/bulk/" in schema["paths"]
    assert "/api/v1/campaigns/{id}/launch/" in schema["paths"]
    assert schema["components"]["schemas"]["Error"]["properties"]["error"]


@pytest.mark.django_db
def test_a_body_over_the_upload_cap_is_a_413_in_the_error_shape(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api.post("/api/v1/categories/", {"slug": "news", "name": "x" * 2000}, format="json")

    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


@pytest.mark.django_db
def test_the_api_root_lists_the_resources(api):
    response = api.get("/api/v1/")

    assert response.status_code == 200
    assert set(response.json()) == {
        "recipients", "recipients/syncs", "templates", "categories", "audiences", "campaigns", "opt-outs",
        "messages",
    }


def test_text_the_api_trims_must_hold_a_visible_character_in_the_schema(openapi):
    name = openapi["components"]["schemas"]["CategoryRequest"]["properties"]["name"]

    assert re.search(name["pattern"], "Company news")
    for blank in ("\f", " \u3000 ", "\x1c", "\u2028"):
        assert blank.strip() == "" and not re.search(name["pattern"], blank)


def test_the_bulk_body_takes_any_row_and_says_how_many(openapi):
    recipients = openapi["components"]["schemas"]["RecipientBulkRequest"]["properties"]["recipients"]

    assert recipients["maxItems"] == 10_000
    assert recipients["items"]["anyOf"] == [{"$ref": "#/components/schemas/RecipientRowRequest"}, {}]
