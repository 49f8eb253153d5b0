"""A person acknowledges a message and answers its poll in Teams (the emulator's inbox page, in a real browser, sending
Crier the invokes Teams sends), sees the card Crier answers with, and the author watches both counted live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = [pytest.mark.browser]


def test_a_person_acknowledges_and_answers_in_teams_and_the_watch_page_counts_both(
        teams, live_server, staff, chromium, open_browser):
    from delivery import services
    from delivery.sending import delivery_send

    teams.client.config(bot_endpoint=f"{live_server.url}/api/messages")
    people = [factories.recipient(first_name=name) for name in ("Robin", "Sam")]
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "The summer party"}]}
    campaign = factories.campaign(
        name="Summer party", template=factories.template(kind="adaptive_card", text="", card=card),
        acknowledgement="asked", poll_question="Where should it be?", poll_options=["Leeds", "London", "Online"])
    services.campaign_launch(campaign_id=campaign.pk)
    for person in people:
        assert delivery_send(delivery_id=campaign.deliveries.get(recipient=person).pk).status == "sent"

    context = chromium.new_context(ignore_https_errors=True)  # the emulator's own certificate authority
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{teams.url}/inbox/{people[0].aad_object_id}")
        expect(page.locator("form.execute button", has_text="Acknowledge")).to_have_count(1)
        page.locator("form.execute button", has_text="Acknowledge").click()
        # Crier's answer is the card Teams now shows: the button gave way to when they acknowledged.
        expect(page.locator(".message").first).to_contain_text("Acknowledged on")
        expect(page.locator("form.execute button", has_text="Acknowledge")).to_have_count(0)

        page.locator("form.execute label", has_text="London").click()
        page.locator("form.execute button", has_text="Answer").click()
        expect(page.locator(".message").first).to_contain_text("Your answer: London")
        expect(page.locator("form.execute button", has_text="Change my answer")).to_have_count(1)
        assert errors == []
    finally:
        context.close()

    author = open_browser()
    page = author.sign_in("casey")
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/watch/")
    expect(page.locator("#count-acknowledged")).to_have_text("1")
    expect(page.locator("#poll-answered")).to_have_text("1")
    expect(page.locator("#poll-count-1")).to_have_text("1")
    expect(page.locator("#poll-count-0")).to_have_text("0")
    expect(page.locator("#watch-acknowledgements a")).to_have_attribute(
        "href", f"/admin/campaigns/campaign/{campaign.pk}/acknowledgements.csv")
    author.shot("watch-engagement")
