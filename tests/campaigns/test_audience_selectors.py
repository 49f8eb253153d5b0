"""Who an audience selects (include and exclude lists on every kind), the editor's live preview and
suggested values, and the people a CSV file names."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Audience
from campaigns.selectors import (
    audience_count,
    audience_preview,
    audience_recipients,
    recipient_field_values,
    recipients_from_csv,
)
from delivery import services
from tests import factories

pytestmark = pytest.mark.django_db

SALES = [{"field": "department", "op": "eq", "value": "Sales"}]


def selected(audience) -> set[int]:
    return set(audience_recipients(audience=audience).values_list("pk", flat=True))


def test_the_include_list_adds_people_to_those_the_rules_select():
    seller = factories.recipient(department="Sales")
    lawyer = factories.recipient(department="Legal")
    factories.recipient(department="Legal")
    audience = factories.audience(kind="rules", rules=SALES)
    audience.members.add(lawyer)

    assert selected(audience) == {seller.pk, lawyer.pk}
    assert audience_count(audience=audience) == 2


def test_people_who_left_are_not_selected_even_on_the_include_list():
    gone = factories.recipient(department="Legal", is_active=False)
    audience = factories.audience(kind="rules", rules=SALES)
    audience.members.add(gone)

    assert gone.pk not in selected(audience)


@pytest.mark.parametrize("kind", ["everyone", "static", "rules"])
def test_the_exclude_list_wins_over_the_kind_the_rules_and_the_include_list(kind):
    kept = factories.recipient(department="Sales")
    excluded = factories.recipient(department="Sales")
    audience = factories.audience(kind=kind, rules=SALES if kind == "rules" else [])
    audience.members.add(kept, excluded)
    audience.excluded.add(excluded)

    assert selected(audience) == {kept.pk}


def test_a_launch_writes_deliveries_for_the_include_list_and_not_for_the_exclude_list():
    seller = factories.recipient(department="Sales")
    excluded_seller = factories.recipient(department="Sales")
    included_lawyer = factories.recipient(department="Legal")
    factories.recipient(department="Legal")
    audience = factories.audience(kind="rules", rules=SALES)
    audience.members.add(included_lawyer)
    audience.excluded.add(excluded_seller)
    campaign = factories.campaign(audience=audience)

    services.campaign_launch(campaign_id=campaign.pk)

    assert set(campaign.deliveries.values_list("recipient_id", flat=True)) == {seller.pk, included_lawyer.pk}


def test_preview_counts_and_samples_a_definition_that_is_not_saved():
    ann = factories.recipient(first_name="Ann", last_name="Lee", department="Sales")
    bob = factories.recipient(first_name="Bob", last_name="Ray", department="Legal")
    cid = factories.recipient(first_name="Cid", last_name="Moe", department="Sales")

    preview = audience_preview(kind="rules", rules=SALES, member_ids=[bob.pk], excluded_ids=[cid.pk])

    assert preview.count == 2
    assert preview.sample == ["Ann Lee (Sales)", "Bob Ray (Legal)"]
    assert preview.errors == []
    assert not Audience.objects.exists()
    assert ann.pk < bob.pk  # the sample is in id order


def test_preview_samples_at_most_ten_people():
    for _ in range(12):
        factories.recipient()

    preview = audience_preview(kind="everyone", rules=[], member_ids=[], excluded_ids=[])

    assert preview.count == 12
    assert len(preview.sample) == 10


def test_preview_of_invalid_rules_gives_the_validation_message_and_no_count():
    preview = audience_preview(
        kind="rules", rules=[{"field": "salary", "op": "eq", "value": "high"}], member_ids=[], excluded_ids=[]
    )

    assert preview.count is None
    assert "Rule 1: unknown field 'salary'" in preview.errors[0]


def test_preview_of_a_static_list_with_rules_says_only_a_rules_audience_has_rules():
    preview = audience_preview(kind="static", rules=SALES, member_ids=[], excluded_ids=[])

    assert (preview.count, preview.errors) == (None, ["Only a rules audience has rules."])


def test_preview_uses_the_saved_lists_of_the_audience_when_the_page_does_not_list_them():
    seller = factories.recipient(department="Sales")
    lawyer = factories.recipient(department="Legal")
    audience = factories.audience(kind="rules", rules=SALES)
    audience.members.add(lawyer)
    audience.excluded.add(seller)

    preview = audience_preview(kind="rules", rules=SALES, member_ids=None, excluded_ids=None, audience_id=audience.pk)

    assert preview.count == 1
    assert preview.sample == [f"{lawyer.first_name} {lawyer.last_name} (Legal)"]


def test_suggested_values_are_the_most_common_first_without_empty_values_or_people_who_left():
    for _ in range(3):
        factories.recipient(department="Sales", location="Paris", country="FR", job_title="")
    factories.recipient(department="Legal", location="Lyon", country="FR", job_title="Counsel")
    for _ in range(5):
        factories.recipient(department="Finance", is_active=False)

    values = recipient_field_values(limit=10)

    assert values == {
        "department": ["Sales", "Legal"], "location": ["Paris", "Lyon"], "country": ["FR"], "job_title": ["Counsel"]
    }


def test_suggested_values_are_at_most_the_limit_for_each_field():
    for name in ("A", "B", "B", "C", "C", "C"):
        factories.recipient(department=name)

    assert recipient_field_values(limit=2)["department"] == ["C", "B"]


# --- People named in a CSV file ---------------------------------------------------------------------


def read(text: str | bytes, **limits):
    data = text.encode() if isinstance(text, str) else text
    return recipients_from_csv(file=io.BytesIO(data), **limits)


def messages(exc: pytest.ExceptionInfo) -> str:
    return " ".join(exc.value.messages)


def test_csv_names_people_by_external_id_or_email_with_a_bom_semicolons_and_blank_lines():
    ann = factories.recipient(external_id="E-1", email="ann@example.com")
    bob = factories.recipient(external_id="E-2", email="Bob@Example.com")

    found = read("\ufeffName;External ID;Email\r\n\r\nAnn;E-1;\r\nBob;;BOB@example.com\r\n\r\n")

    assert found.ids == sorted([ann.pk, bob.pk])
    assert found.rows == 2


def test_csv_with_an_email_column_only_matches_emails_whatever_their_case():
    ann = factories.recipient(email="Ann.Lee@example.com")

    assert read("EMAIL\nann.lee@EXAMPLE.com\n").ids == [ann.pk]


def test_csv_rows_that_match_nobody_are_listed_with_their_line_numbers():
    factories.recipient(external_id="E-1")

    with pytest.raises(ValidationError) as exc:
        read("external_id,name\nE-1,Ann\nE-404,Nobody\n\n,Blank id\n")

    text = messages(exc)
    assert "2 rows of the file match nobody" in text
    assert "line 3: E-404" in text
    assert "line 5: no external_id or email" in text
    assert "Nothing was saved" in text


def test_csv_lists_at_most_twenty_unknown_values_and_counts_the_rest():
    rows = "\n".join(f"ghost-{n}" for n in range(25))

    with pytest.raises(ValidationError) as exc:
        read(f"external_id\n{rows}\n")

    text = messages(exc)
    assert "25 rows of the file match nobody" in text
    assert "line 21: ghost-19" in text
    assert "ghost-20" not in text
    assert "and 5 more" in text


def test_csv_without_an_external_id_or_email_column_is_refused_naming_its_header():
    with pytest.raises(ValidationError) as exc:
        read("name,department\nAnn,Sales\n")

    assert "needs an external_id or email column" in messages(exc)
    assert "name, department" in messages(exc)


def test_csv_larger_than_the_limit_is_refused():
    with pytest.raises(ValidationError) as exc:
        read("external_id\n" + "x" * 2000, max_bytes=1000)

    assert "larger than" in messages(exc)


def test_csv_with_more_rows_than_the_limit_is_refused():
    with pytest.raises(ValidationError) as exc:
        read("external_id\na\nb\nc\n", max_rows=2)

    assert "more than 2 rows" in messages(exc)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "The file is empty."),
        (b"external_id\n\n", "names nobody"),
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet"),
        (b"external_id\nE\x00-1\n", "not a CSV text file"),
    ],
)
def test_csv_that_is_empty_or_not_text_is_refused_with_a_reason(data, message):
    with pytest.raises(ValidationError) as exc:
        read(data)

    assert message in messages(exc)


def test_csv_saved_by_a_windows_spreadsheet_is_read():
    person = factories.recipient(external_id="E-1")

    assert read("external_id;name\nE-1;Zoë\n".encode("cp1252")).ids == [person.pk]
    assert read("external_id\tname\nE-1\tZoë\n".encode("utf-16")).ids == [person.pk]


# --- Rules on free attributes, as the rule editor writes them (values typed as text) ---------------


def rules_select(*rules) -> set[int]:
    audience = factories.audience(kind="rules", rules=list(rules))
    return selected(audience)


def test_an_attribute_value_typed_as_text_matches_the_number_or_boolean_it_spells():
    seven = factories.recipient(attributes={"grade": 7})
    seven_text = factories.recipient(attributes={"grade": "7"})
    remote = factories.recipient(attributes={"grade": 8, "remote": True})

    assert rules_select({"field": "attributes.grade", "op": "eq", "value": "7"}) == {seven.pk, seven_text.pk}
    assert rules_select({"field": "attributes.grade", "op": "in", "value": ["8", "9"]}) == {remote.pk}
    assert rules_select({"field": "attributes.remote", "op": "eq", "value": "true"}) == {remote.pk}


def test_is_not_on_an_attribute_also_selects_people_without_it():
    paris = factories.recipient(attributes={"site": "paris"})
    lyon = factories.recipient(attributes={"site": "lyon"})
    nowhere = factories.recipient(attributes={})

    assert paris.pk not in rules_select({"field": "attributes.site", "op": "neq", "value": "paris"})
    assert rules_select({"field": "attributes.site", "op": "neq", "value": "paris"}) == {lyon.pk, nowhere.pk}
    assert rules_select({"field": "attributes.site", "op": "not_in", "value": ["paris", "lyon"]}) == {nowhere.pk}


def test_at_least_on_an_attribute_compares_numbers_as_numbers():
    ten = factories.recipient(attributes={"level": 10})
    five = factories.recipient(attributes={"level": 5})
    two = factories.recipient(attributes={"level": 2})
    factories.recipient(attributes={"level": "senior"})
    factories.recipient(attributes={})

    assert rules_select({"field": "attributes.level", "op": "gte", "value": "5"}) == {ten.pk, five.pk}
    assert rules_select({"field": "attributes.level", "op": "lte", "value": 5}) == {five.pk, two.pk}
    assert rules_select({"field": "attributes.level", "op": "lte", "value": "4.5"}) == {two.pk}


def test_an_attribute_named_like_a_query_word_is_read_as_an_attribute():
    person = factories.recipient(attributes={"contains": "x", "in": "y"})
    factories.recipient(attributes={})

    contains_x = {"field": "attributes.contains", "op": "eq", "value": "x"}
    in_is_not_z = {"field": "attributes.in", "op": "neq", "value": "z"}

    assert rules_select(contains_x, in_is_not_z) == {person.pk}


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 400 + ".5"])
def test_an_attribute_rule_with_an_absurd_number_selects_by_text_instead_of_failing(value):
    factories.recipient(attributes={"grade": 7})
    audience = factories.audience(kind=Audience.Kind.RULES, rules=[{"field": "attributes.grade", "op": "eq", "value": value}])

    assert audience_count(audience=audience) == 0
