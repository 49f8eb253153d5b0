"""An author sends a completed campaign again to the people it failed for, from its Watch page, once the cause is
fixed, and watches the new campaign go out; the first campaign's page lists it, with the funnel over time."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = [pytest.mark.browser]


def test_an_author_sends_a_campaign_again_to_those_it_failed_for_and_watches_it(teams, live_server, staff,
                                                                              open_browser):
    from delivery import services
    from delivery.sending import delivery_send

    have, lack = factories.recipient(first_name="Robin"), factories.recipient(first_name="Sam")
    teams.client.register_users([str(have.aad_object_id)])
    teams.client.register_users([{"aad_object_id": str(lack.aad_object_id), "name": "Sam", "installed": False}])
    teams.client.config(auto_install=False)
    campaign = factories.campaign(name="Office move")
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        delivery_send(delivery_id=delivery.pk)
    assert services.campaigns_complete_finished() == [campaign.pk]
    teams.client.install(str(lack.aad_object_id))  # the cause, fixed

    author = open_browser()
    page = author.sign_in("casey")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/watch/")
    expect(page.locator("#count-failed")).to_have_text("1")
    expect(page.locator("#funnel-chart")).to_be_visible()  # the funnel over time: one sent by the end of the hour
    page.get_by_role("link", name="Send again to those it failed for").click()
    page.click("input[value='Yes, send it again']")

    expect(page.locator(".messagelist")).to_contain_text("is sent again to those it failed for, as a campaign of its own")
    expect(page.locator("#watch-follows")).to_contain_text("Follows Office move: sent to those it failed for.")
    [again] = campaign.follow_ups.all()
    assert page.url.endswith(f"/admin/campaigns/campaign/{again.pk}/watch/")
    for delivery in again.deliveries.all():
        delivery_send(delivery_id=delivery.pk)
    expect(page.locator("#count-sent")).to_have_text("1", timeout=15_000)
    author.shot("watch-sent-again")

    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/watch/")
    expect(page.locator("#watch-follow-ups")).to_contain_text("Sent again: Office move")
    assert len(teams.client.messages(user=str(lack.aad_object_id))) == 1
    assert errors == []
