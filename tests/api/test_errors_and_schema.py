import re

import pytest
import yaml
from django.core.management import call_command

from campaigns.models import Category, MessageTemplate
from tests import factories
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


@pytest.fixture(scope="module")
def openapi(tmp_path_factory):
    schema_file = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))
    return yaml.safe_load(schema_file.read_text())


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def test_the_openapi_schema_validates_without_warnings(openapi):
    schema = openapi
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


def test_every_post_documents_the_idempotency_key_header(openapi):
    posts = [(path, op) for path, method, op in operations(openapi) if method == "POST"]

    assert len(posts) > 10
    for path, operation in posts:
        headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
        assert headers["Idempotency-Key"]["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}, path


@pytest.mark.parametrize(
    "path, method, scope",
    [
        ("/api/v1/recipients/", "GET", "read"),
        ("/api/v1/recipients/bulk/", "POST", "recipients:write"),
        ("/api/v1/templates/{id}/", "PATCH", "campaigns:write"),
        ("/api/v1/campaigns/{id}/launch/", "POST", "campaigns:send"),
        ("/api/v1/messages/", "POST", "campaigns:send"),
        ("/api/v1/opt-outs/{id}/", "DELETE", "opt-outs:write"),
        ("/api/v1/templates/{id}/approve-direct/", "POST", "campaigns:approve"),
    ],
)
def test_each_operation_names_the_scope_it_needs(openapi, path, method, scope):
    operation = openapi["paths"][path][method.lower()]

    assert operation["x-required-scopes"] == [scope]
    assert f"`{scope}` scope" in operation["description"]
    assert operation["security"] == [{"ApiKey": []}]


def test_every_operation_documents_its_error_answers_in_the_error_shape(openapi):
    every = list(operations(openapi))
    assert len(every) > 20
    for path, method, operation in every:
        responses = operation["responses"]
        expected = {"401", "403", "429"}
        if method in ("POST", "PUT", "PATCH"):
            expected |= {"400", "413", "415"}
        if method == "POST":
            expected |= {"409", "422"}
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), (method, path, sorted(expected - set(responses)))
        for code in expected:
            body = responses[code]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path, code)
            (example,) = body["examples"].values()
            assert set(example["value"]["error"]) == {"code", "message", "fields"}
        assert "integer" == responses["429"]["headers"]["Retry-After"]["schema"]["type"]
    assert "missing_scope" in openapi["paths"]["/api/v1/campaigns/{id}/launch/"]["post"]["responses"]["403"]["description"]
    assert "approval_required" in openapi["paths"]["/api/v1/campaigns/{id}/launch/"]["post"]["responses"]["409"]["description"]


def test_request_bodies_refuse_in_the_schema_the_fields_the_api_refuses(openapi):
    schemas = openapi["components"]["schemas"]

    for name in ("RecipientRowRequest", "MessageTemplateRequest", "PatchedCampaignRequest", "OptOutRequest"):
        assert schemas[name]["additionalProperties"] is False, name


def test_the_schema_allows_the_empty_values_the_api_gives(openapi):
    schemas = openapi["components"]["schemas"]

    skip_reason = schemas["Delivery"]["properties"]["skip_reason"]
    assert {"$ref": "#/components/schemas/BlankEnum"} in skip_reason["oneOf"]
    assert schemas["BlankEnum"]["enum"] == [""]
    assert "format" not in schemas["Recipient"]["properties"]["email"]
    assert "minLength" not in schemas["OptOutRequest"]["properties"]["category"]
    assert "every non-mandatory category" in schemas["OptOutRequest"]["properties"]["category"]["description"]
    status_filter = next(p for p in openapi["paths"]["/api/v1/campaigns/"]["get"]["parameters"] if p["name"] == "status")
    assert "" in status_filter["schema"]["enum"]


def test_the_schema_gives_real_examples(openapi):
    text = yaml.safe_dump(openapi)
    row = openapi["components"]["schemas"]["RecipientRowRequest"]["properties"]

    assert (row["external_id"]["example"], row["country"]["example"]) == ("E1001", "FR")
    assert row["attributes"]["example"] == {"site": "paris", "grade": 7, "manager": True}
    assert "additionalProp1" not in text


@pytest.mark.django_db
def test_an_opt_out_with_an_empty_category_covers_every_category(api):
    person = factories.recipient()

    response = api.post("/api/v1/opt-outs/", {"recipient": person.external_id, "category": ""}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["category"] is None


def test_text_the_api_trims_must_hold_a_visible_character_in_the_schema(openapi):
    name = openapi["components"]["schemas"]["CategoryRequest"]["properties"]["name"]

    assert re.search(name["pattern"], "Company news")
    for blank in ("\f", " \u3000 ", "\x1c", "\u2028"):
        assert blank.strip() == "" and not re.search(name["pattern"], blank)


def test_the_bulk_body_takes_any_row_and_says_how_many(openapi):
    recipients = openapi["components"]["schemas"]["RecipientBulkRequest"]["properties"]["recipients"]

    assert recipients["maxItems"] == 10_000
    assert recipients["items"]["anyOf"] == [{"$ref": "#/components/schemas/RecipientRowRequest"}, {}]


def test_an_unknown_format_query_parameter_is_ignored_not_a_404(api):
    response = api.get("/api/v1/templates/?format=xml")

    assert response.status_code == 200


def test_the_schema_says_attributes_are_replaced_as_a_whole(openapi):
    attributes = openapi["components"]["schemas"]["RecipientRowRequest"]["properties"]["attributes"]

    assert "replaces the person's attributes as a whole" in attributes["description"]


def test_the_schema_lets_an_opt_out_name_every_category_with_an_empty_string(openapi):
    category = openapi["components"]["schemas"]["OptOutRequest"]["properties"]["category"]
    pattern = re.compile(category["pattern"])  # JSON Schema patterns match anywhere in the value

    assert pattern.search("") and pattern.search("news")
    assert not pattern.search("   ")
