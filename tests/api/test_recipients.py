import json
import uuid

import pytest
from django.conf import settings

from campaigns.models import Recipient
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db
BULK = "/api/v1/recipients/bulk/"


def person(external_id, **fields):
    return {"external_id": external_id, "email": f"{external_id}@example.com", **fields}


def test_bulk_upsert_creates_updates_and_deactivates_leavers(api):
    factories.recipient(external_id="stays", first_name="Old")
    factories.recipient(external_id="leaves", is_active=True)

    response = api.post(
        BULK,
        {
            "recipients": [
                person("new", first_name="Ann", country="fr", time_zone="Europe/Paris", attributes={"site": "paris"}),
                person("stays", first_name="Renamed"),
                person("leaves", is_active=False),
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {"created": 1, "updated": 2, "deactivated": 1, "errors": [], "ignored": []}
    new = Recipient.objects.get(external_id="new")
    assert (new.first_name, new.country, new.time_zone) == ("Ann", "FR", "Europe/Paris")
    assert new.attributes == {"site": "paris"}
    assert Recipient.objects.get(external_id="stays").first_name == "Renamed"
    assert Recipient.objects.get(external_id="leaves").is_active is False


def test_bulk_upsert_reports_bad_rows_and_keeps_good_ones(api):
    response = api.post(
        BULK,
        {
            "recipients": [
                person("ok-0"),
                person("bad-country", country="France"),
                {"email": "no-id@example.com"},
                person("ok-3", aad_object_id=str(uuid.uuid4())),
                person("bad-zone", time_zone="Mars/Olympus"),
                person("bad-aad", aad_object_id="not-a-uuid"),
                person("bad-attrs", attributes={"nested": {"no": 1}}),
                "not an object",
                person("ok-0"),
                person("unknown-key", shoe_size=44),
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["updated"]) == (2, 0)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "country"),
        (2, "external_id"),
        (4, "time_zone"),
        (5, "aad_object_id"),
        (6, "attributes.nested"),
        (7, "non_field_errors"),
        (8, "external_id"),
        (9, "shoe_size"),
    ]
    assert "Repeats row 0" in body["errors"][6]["message"]
    assert set(Recipient.objects.values_list("external_id", flat=True)) == {"ok-0", "ok-3"}


def test_bulk_upsert_refuses_a_repeated_entra_id_in_the_later_row(api):
    aad = str(uuid.uuid4())

    body = api.post(
        BULK, {"recipients": [person("a", aad_object_id=aad), person("b", aad_object_id=aad.upper())]}, format="json"
    ).json()

    assert body["created"] == 1
    assert body["errors"] == [{"index": 1, "field": "aad_object_id", "message": "Repeats row 0."}]


def test_bulk_upsert_maps_errors_from_the_save_back_to_request_indexes(api):
    owner = factories.recipient(external_id="owner")

    body = api.post(
        BULK,
        {
            "recipients": [
                person("bad", country="123"),
                person("fine"),
                person("thief", aad_object_id=str(owner.aad_object_id)),
            ]
        },
        format="json",
    ).json()

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "country"), (2, "aad_object_id")]
    assert "owner" in body["errors"][1]["message"]
    assert body["created"] == 1
    assert not Recipient.objects.filter(external_id="thief").exists()


def test_bulk_upsert_does_not_query_the_database_per_row(api, django_assert_max_num_queries):
    rows = [
        person(f"emp-{i}", aad_object_id=str(uuid.uuid4()), country="de", start_date="2024-05-01") for i in range(500)
    ]

    with django_assert_max_num_queries(10):
        response = api.post(BULK, {"recipients": rows}, format="json")

    assert response.json()["created"] == 500


def test_bulk_upsert_refuses_more_than_10000_rows(api):
    response = api.post(BULK, {"recipients": [{"external_id": str(i)} for i in range(10_001)]}, format="json")

    assert response.status_code == 400
    assert "At most 10000" in error_of(response)["fields"]["recipients"][0]
    assert not Recipient.objects.exists()


@pytest.mark.parametrize("body", [[{"external_id": "a"}], {"people": []}, {"recipients": {"external_id": "a"}}])
def test_bulk_upsert_refuses_a_malformed_body(api, body):
    response = api.post(BULK, body, format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"


def test_recipients_list_filters_by_department_country_and_active(api):
    match = factories.recipient(department="Sales", country="FR")
    factories.recipient(department="Sales", country="DE")
    factories.recipient(department="Sales", country="FR", is_active=False)
    factories.recipient(department="Legal", country="FR")

    response = api.get("/api/v1/recipients/", {"department": "Sales", "country": "fr", "is_active": "true"})

    assert response.status_code == 200
    assert [r["external_id"] for r in response.json()["results"]] == [match.external_id]


def test_recipients_list_is_cursor_paginated(api):
    people = [factories.recipient() for _ in range(3)]

    first = api.get("/api/v1/recipients/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()

    assert [r["external_id"] for r in first["results"] + second["results"]] == [p.external_id for p in people]
    assert second["next"] is None


def test_recipient_can_be_found_by_entra_object_id_and_retrieved(api):
    someone = factories.recipient()
    factories.recipient()

    listed = api.get("/api/v1/recipients/", {"aad_object_id": str(someone.aad_object_id)}).json()["results"]
    retrieved = api.get(f"/api/v1/recipients/{someone.pk}/").json()

    assert [r["id"] for r in listed] == [someone.pk]
    assert retrieved["external_id"] == someone.external_id


def test_bulk_upsert_accepts_a_body_larger_than_djangos_default_upload_cap(api):
    padding = "x" * 900
    rows = [
        person(f"emp-{i}", job_title=padding[:200], location=padding[:200], attributes={"note": padding})
        for i in range(3000)
    ]
    body = json.dumps({"recipients": rows})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = api.post(BULK, body, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["created"] == 3000


def test_bulk_upsert_reports_malformed_json_in_the_error_shape(api):
    response = api.post(BULK, '{"recipients": [', content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_bulk_upsert_refuses_a_megabyte_attribute_naming_it_and_keeps_the_other_rows(api):
    response = api.post(BULK, {"recipients": [
        person("fine", attributes={"bio": "b" * 1000}),
        person("huge", attributes={"site": "Paris", "bio": "x" * 1_000_000}),
    ]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "attributes.bio")]
    assert "1000000 characters" in body["errors"][0]["message"] and "1000" in body["errors"][0]["message"]
    assert list(Recipient.objects.values_list("external_id", flat=True)) == ["fine"]


@pytest.mark.parametrize(("attributes", "field", "says"), [
    ({f"k{n}": n for n in range(51)}, "attributes", "51 attributes"),
    ({"cost center": "A1"}, "attributes.cost center", "letters, digits"),
    ({"k" * 65: "A1"}, f"attributes.{'k' * 65}", "letters, digits"),
    ({"": "A1"}, "attributes.", "letters, digits"),
    ({f"k{n}": "v" * 900 for n in range(12)}, "attributes", "characters in all"),
    ({"note": "a\x00b"}, "attributes.note", "Null characters"),
])
def test_bulk_upsert_refuses_attributes_past_their_bounds_naming_the_field(api, attributes, field, says):
    body = api.post(BULK, {"recipients": [person("p", attributes=attributes)]}, format="json").json()

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, field)]
    assert says in body["errors"][0]["message"]
    assert not Recipient.objects.exists()


def test_bulk_upsert_refuses_an_attribute_json_can_say_but_postgresql_cannot_store(api):
    def post(attributes: str):
        body = '{"recipients": [{"external_id": "p", "attributes": %s}]}' % attributes
        return api.post(BULK, body, content_type="application/json")

    surrogate, not_a_number = post('{"note": "\\ud800"}'), post('{"grade": NaN}')

    assert surrogate.status_code == 200
    assert surrogate.json()["errors"] == [
        {"index": 0, "field": "attributes.note", "message": "Surrogate characters are not allowed."}
    ]
    assert not_a_number.status_code == 400 and error_of(not_a_number)["code"] == "parse_error"
    assert not Recipient.objects.exists()


def test_bulk_upsert_accepts_what_an_hr_system_sends(api):
    attributes = {f"field_{n}": f"value {n}" for n in range(48)} | {"bio": "b" * 1000, "grade": 7.5}

    body = api.post(BULK, {"recipients": [person("p", attributes=attributes)]}, format="json").json()

    assert body["errors"] == []
    assert Recipient.objects.get().attributes == attributes


def test_attribute_bounds_follow_the_settings(api, settings):
    settings.RECIPIENT_ATTRIBUTES_MAX_KEYS = 2
    settings.RECIPIENT_ATTRIBUTE_MAX_LENGTH = 5

    body = api.post(BULK, {"recipients": [
        person("a", attributes={"x": "123456"}), person("b", attributes={"x": 1, "y": 2, "z": 3}),
    ]}, format="json").json()

    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "attributes.x"), (1, "attributes")]


def test_bulk_upsert_leaves_the_fields_a_row_does_not_mention_as_they_are(api):
    aad = uuid.uuid4()
    factories.recipient(
        external_id="E1", first_name="Ada", aad_object_id=aad, department="Sales", country="FR",
        start_date="2024-05-01", attributes={"site": "paris"}, is_active=True,
    )

    response = api.post(BULK, {"recipients": [{"external_id": "E1", "first_name": "Adèle"}]}, format="json")

    assert response.json() == {"created": 0, "updated": 1, "deactivated": 0, "errors": [], "ignored": []}
    ada = Recipient.objects.get(external_id="E1")
    assert ada.first_name == "Adèle"
    assert (ada.aad_object_id, ada.department, ada.country) == (aad, "Sales", "FR")
    assert (str(ada.start_date), ada.attributes, ada.is_active) == ("2024-05-01", {"site": "paris"}, True)
    assert ada.email.endswith("@example.com")


def test_bulk_upsert_clears_a_field_sent_as_null(api):
    factories.recipient(
        external_id="E1", department="Sales", start_date="2024-05-01", attributes={"site": "paris"}, country="FR"
    )

    api.post(
        BULK,
        {"recipients": [{"external_id": "E1", "department": None, "aad_object_id": None, "start_date": None,
                         "attributes": None}]},
        format="json",
    )

    person_now = Recipient.objects.get(external_id="E1")
    assert (person_now.department, person_now.aad_object_id, person_now.start_date) == ("", None, None)
    assert (person_now.attributes, person_now.country) == ({}, "FR")


def test_bulk_upsert_gives_a_new_person_the_empty_values_for_fields_left_out(api):
    api.post(BULK, {"recipients": [{"external_id": "new", "first_name": "Ann"}]}, format="json")

    new = Recipient.objects.get(external_id="new")
    assert (new.first_name, new.department, new.aad_object_id, new.attributes, new.is_active) == (
        "Ann", "", None, {}, True
    )


def test_bulk_upsert_updates_rows_of_different_shapes_in_one_call(api):
    factories.recipient(external_id="a", department="Sales", job_title="Clerk")
    factories.recipient(external_id="b", department="Legal", job_title="Counsel")

    body = api.post(
        BULK,
        {"recipients": [{"external_id": "a", "job_title": "Manager"}, {"external_id": "b", "department": "HR"},
                        {"external_id": "c", "department": "IT"}]},
        format="json",
    ).json()

    assert (body["created"], body["updated"]) == (1, 2)
    rows = dict((r.external_id, (r.department, r.job_title)) for r in Recipient.objects.all())
    assert rows == {"a": ("Sales", "Manager"), "b": ("HR", "Counsel"), "c": ("IT", "")}


def test_bulk_upsert_deactivates_a_leaver_named_only_by_external_id_and_keeps_the_rest(api):
    leaver = factories.recipient(external_id="leaves", department="Legal")

    body = api.post(BULK, {"recipients": [{"external_id": "leaves", "is_active": False}]}, format="json").json()

    assert (body["updated"], body["deactivated"]) == (1, 1)
    gone = Recipient.objects.get(external_id="leaves")
    assert (gone.is_active, gone.department, gone.aad_object_id) == (False, "Legal", leaver.aad_object_id)


@pytest.mark.parametrize(
    "field, value",
    [
        ("aad_object_id", 5),
        ("aad_object_id", 1.5),
        ("aad_object_id", ["0d6a4f8e-3f5c-4d6b-9a52-4b1c2e3f4a5b"]),
        ("start_date", "2021-W01-1"),
        ("start_date", "20240501"),
        ("start_date", "2024-05-01T00:00:00"),
        ("start_date", "2024-5-1"),
        ("start_date", "2024-05-01\n"),
        ("start_date", "２０２４-05-01"),
        ("start_date", 20240501),
        ("start_date", "2024-02-30"),
    ],
)
def test_bulk_upsert_refuses_a_uuid_or_date_of_the_wrong_type_or_format_naming_the_field(api, field, value):
    response = api.post(BULK, {"recipients": [person("E1", **{field: value}), person("E2")]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, field)]
    assert list(Recipient.objects.values_list("external_id", flat=True)) == ["E2"]


def test_bulk_upsert_accepts_a_uuid_string_and_a_yyyy_mm_dd_date(api):
    aad = "0D6A4F8E-3F5C-4D6B-9A52-4B1C2E3F4A5B"

    response = api.post(BULK, {"recipients": [person("E1", aad_object_id=aad, start_date="2024-05-01")]}, format="json")

    assert response.status_code == 200 and response.json()["errors"] == []
    stored = Recipient.objects.get(external_id="E1")
    assert (str(stored.aad_object_id), stored.start_date.isoformat()) == (aad.lower(), "2024-05-01")


def test_bulk_upsert_replaces_attributes_as_a_whole_rather_than_merging_them(api):
    factories.recipient(external_id="E1", attributes={"site": "Paris", "grade": 7})

    response = api.post(BULK, {"recipients": [{"external_id": "E1", "attributes": {"site": "Lyon"}}]}, format="json")

    assert response.status_code == 200 and response.json()["errors"] == []
    assert Recipient.objects.get(external_id="E1").attributes == {"site": "Lyon"}


def test_bulk_upsert_leaves_what_entra_id_owns_for_the_people_it_knows_and_says_so(api, settings):
    settings.ENTRA_SYNC = True
    settings.ENTRA_SYNC_FIELDS = "department=department,attributes.cost_center=employeeOrgData.costCenter"
    for name in ("a", "b", "linked"):
        factories.recipient(external_id=name, department="Sales", attributes={"cost_center": "CC-1", "site": "x"},
                            entra_managed=True)
    factories.recipient(external_id="hr-only", department="Sales")  # Entra ID does not keep this person

    response = api.post(BULK, {"recipients": [
        person("a", department="Finance", is_active=False),  # a leaver: HR's to end, whatever Entra ID owns
        person("b", department="Sales", attributes={"cost_center": "CC-2", "site": "z"}),
        person("linked", department="Sales", first_name="Renamed", attributes={"cost_center": "CC-1", "site": "y"}),
        person("hr-only", department="Finance"),
    ]}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["errors"], body["updated"], body["deactivated"]) == ([], 4, 1)
    assert [(item["index"], item["field"]) for item in body["ignored"]] == [(0, "department"), (1, "attributes.cost_center")]
    assert "Entra ID owns this field" in body["ignored"][0]["message"]
    a, b = Recipient.objects.get(external_id="a"), Recipient.objects.get(external_id="b")
    assert (a.department, a.is_active) == ("Sales", False)
    assert b.attributes == {"cost_center": "CC-1", "site": "z"}
    linked = Recipient.objects.get(external_id="linked")
    assert (linked.department, linked.first_name, linked.attributes) == ("Sales", "Renamed", {"cost_center": "CC-1", "site": "y"})
    assert Recipient.objects.get(external_id="hr-only").department == "Finance"


def test_bulk_upsert_changes_any_field_while_the_entra_sync_is_off(api, settings):
    settings.ENTRA_SYNC = False
    factories.recipient(external_id="linked", department="Sales")

    response = api.post(BULK, {"recipients": [person("linked", department="Finance")]}, format="json")

    assert (response.json()["errors"], response.json()["ignored"]) == ([], [])
    assert Recipient.objects.get(external_id="linked").department == "Finance"
