"""Building an audience in the browser: rules as rows, the live count and a sample of names, and a
CSV of individual people added on top."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns.models import Audience
from campaigns.selectors import audience_count
from tests import factories

pytestmark = pytest.mark.browser


def test_an_author_builds_a_rules_audience_sees_who_it_selects_and_adds_people_from_a_csv(
    staff, open_browser, tmp_path
):
    for n in range(3):
        factories.recipient(first_name=f"Sales{n}", last_name="FR", department="Sales", country="FR")
    factories.recipient(first_name="Sales", last_name="DE", department="Sales", country="DE")
    legal = factories.recipient(first_name="Lena", last_name="Legal", department="Legal", country="FR",
                                external_id="LEGAL-1")
    csv = tmp_path / "extra.csv"
    csv.write_text("external_id\nLEGAL-1\n")
    author = open_browser()
    page = author.sign_in("casey")

    page.goto("/admin/campaigns/audience/add/")
    page.fill("#id_name", "Sales in France")
    page.select_option("#id_kind", "rules")
    rules = page.locator(".crier-rules")
    rules.locator(".crier-rules-add").click()
    first = rules.locator("tbody tr").nth(0)
    first.locator(".crier-rule-field").select_option("department")
    first.locator(".crier-rule-value").fill("Sales")
    preview = page.locator(".crier-audience-preview")
    expect(preview).to_contain_text("4 people selected")

    rules.locator(".crier-rules-add").click()
    second = rules.locator("tbody tr").nth(1)
    second.locator(".crier-rule-field").select_option("country")
    second.locator(".crier-rule-op").select_option("in")
    second.locator(".crier-rule-value").fill("FR, BE")
    expect(preview).to_contain_text("3 people selected")
    expect(preview.locator(".crier-audience-sample li")).to_have_count(3)
    expect(preview).to_contain_text("Sales0 FR")

    page.set_input_files("input[name=people_file]", str(csv))
    author.shot("audience")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    audience = Audience.objects.get(name="Sales in France")
    assert audience.rules == [
        {"field": "department", "op": "eq", "value": "Sales"},
        {"field": "country", "op": "in", "value": ["FR", "BE"]},
    ]
    assert list(audience.members.all()) == [legal]
    assert audience_count(audience=audience) == 4  # three from the rules, one from the file
    expect(preview).to_contain_text("4 people selected")


def test_a_csv_naming_someone_unknown_is_refused_with_the_line_and_nothing_is_saved(staff, open_browser, tmp_path):
    factories.recipient(external_id="KNOWN-1")
    csv = tmp_path / "people.csv"
    csv.write_text("external_id\nKNOWN-1\nNOBODY-9\n")
    author = open_browser()
    page = author.sign_in("casey")

    page.goto("/admin/campaigns/audience/add/")
    page.fill("#id_name", "From a file")
    page.select_option("#id_kind", "static")
    page.set_input_files("input[name=people_file]", str(csv))
    page.click("input[name=_save]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-people_file .errorlist")).to_contain_text("NOBODY-9")
    expect(page.locator(".field-people_file .errorlist")).to_contain_text("3")  # its line
    assert not Audience.objects.filter(name="From a file").exists()
