"""Admin pages a comms team opens in the first hour, in a real browser: the campaign form's live
size and preview, and the deliveries list at a laptop's width."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from delivery.models import Delivery, delivery_id
from tests import factories

pytestmark = [pytest.mark.browser]


def test_the_campaign_form_shows_its_audience_s_size_and_its_message_before_it_is_saved(staff, open_browser):
    for n in range(3):
        factories.recipient(first_name=f"Lab{n}", department="Lab")
    factories.recipient(first_name="Sam", department="Sales")
    lab = factories.audience(name="Lab", kind="rules", rules=[{"field": "department", "op": "eq", "value": "Lab"}])
    template = factories.template(name="Lab move", text="Hello {{first_name}}: the **3rd floor lab** opens Monday.")

    author = open_browser()
    page = author.sign_in("casey")
    page.goto("/admin/campaigns/campaign/add/")

    expect(page.locator("#campaign-live-reach")).to_have_text("4 people: everyone active today.")
    expect(page.locator("#campaign-live-message-status")).to_have_text("Choose a template to see its message.")
    page.select_option("#id_audience", str(lab.pk))
    expect(page.locator("#campaign-live-reach")).to_have_text("3 people in “Lab” today.")
    page.select_option("#id_template", str(template.pk))
    # Drawn by the Adaptive Cards renderer's markdown, for the audience's first person.
    expect(page.locator("#campaign-live-card strong")).to_have_text("3rd floor lab")
    expect(page.locator("#campaign-live-recipient")).to_contain_text("Lab0")
    # A name another campaign has: a warning under the field, as it is typed (the save is not refused).
    other = factories.campaign(name="Lab move")
    page.fill("#id_name", "lab move")
    expect(page.locator("#campaign-live-name")).to_have_text(
        f"Another campaign is also called “Lab move” (#{other.pk}): a different name tells them apart in lists and "
        "reports."
    )
    page.fill("#id_name", "Lab move: Monday")
    expect(page.locator("#campaign-live-name")).to_be_hidden()
    author.shot("campaign-form")


def test_the_deliveries_list_fits_a_1440_pixel_wide_screen(staff, open_browser):
    campaign = factories.campaign(name="Quarterly all-hands: the new parental leave policy, explained")
    now = timezone.now()
    for n in range(20):
        person = factories.recipient(
            external_id=f"HR-2026-{n:08d}-LONDON", first_name="Maximilian-Alexander", last_name=f"Featherstonehaugh{n}",
            email=f"maximilian-alexander.featherstonehaugh{n}@subsidiary.example.com",
        )
        Delivery.objects.create(
            id=delivery_id(campaign.pk, person.pk), campaign=campaign, recipient=person,
            status="failed" if n % 2 else "skipped", skip_reason="" if n % 2 else "opted_out",
            error_code="ConversationBlockedByUser" if n % 2 else "", attempts=8, last_status_code=403,
            finished_at=now - datetime.timedelta(minutes=n),
        )

    author = open_browser()
    author.context.pages[0].set_viewport_size({"width": 1440, "height": 900})
    page = author.sign_in("casey")
    page.goto(f"/admin/delivery/delivery/?campaign__id__exact={campaign.pk}")
    expect(page.locator("#result_list")).to_be_visible()
    author.shot("deliveries")

    widths = page.evaluate(
        "() => ({page: document.documentElement.scrollWidth, window: window.innerWidth,"
        " table: document.querySelector('#result_list').getBoundingClientRect().right,"
        " box: document.querySelector('#changelist-form .results').getBoundingClientRect().right})"
    )
    assert widths["page"] <= widths["window"], widths
    assert widths["table"] <= widths["box"] + 1, widths


def test_the_emulator_s_inbox_draws_markdown_and_cards_with_the_admin_s_renderer(teams, transactional_db, chromium):
    from delivery import services
    from delivery.sending import delivery_send

    person = factories.recipient(first_name="Robin")
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Meet in the **atrium**"}]}
    for template in (factories.template(text="Hello {{first_name}}: the **3rd floor lab** opens Monday."),
                     factories.template(kind="adaptive_card", text="", card=card)):
        campaign = factories.campaign(template=template)
        services.campaign_launch(campaign_id=campaign.pk)
        delivery_send(delivery_id=campaign.deliveries.get(recipient=person).pk)

    context = chromium.new_context(ignore_https_errors=True)  # the emulator's own certificate authority
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{teams.url}/inbox/{person.aad_object_id}")
        expect(page.locator(".drawn strong").filter(has_text="3rd floor lab")).to_have_count(1)
        expect(page.locator(".drawn .ac-adaptiveCard strong")).to_have_text("atrium")
        expect(page.locator("body")).not_to_contain_text("**")
        assert errors == []
    finally:
        context.close()
