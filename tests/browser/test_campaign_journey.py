"""A comms team's campaign, in the browser: link your Teams identity, write the campaign, send a
test to yourself, have a second person approve it, schedule it in your own time zone, watch the
progress bar reach 100%, then recall the message from everyone."""

from __future__ import annotations

import datetime
import re
import uuid
import zoneinfo
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Campaign
from delivery.models import MessageChange
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
PEOPLE = 30
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def test_author_tests_approver_approves_and_the_progress_bar_reaches_100(
    teams, engine, staff, open_browser, settings
):
    settings.APPROVAL_THRESHOLD = 10  # 30 people: this announcement needs a second person
    people = [factories.recipient(aad_object_id=uuid.uuid4(), tenant_id=django_settings.BOT_TENANT_ID)
              for _ in range(PEOPLE - 1)]
    me = factories.recipient(email="casey@example.com", first_name="Casey", tenant_id=django_settings.BOT_TENANT_ID)
    people.append(me)
    teams.client.register_users([{"aad_object_id": str(p.aad_object_id), "name": p.first_name} for p in people])
    template = factories.template(name="All-hands", text="Hello {{first_name}}: the all-hands is on **Friday**.")
    category = factories.category(name="Company news")

    author = open_browser()
    page = author.sign_in("casey")

    # Link my Teams identity and my time zone.
    page.click("#my-profile-link")
    page.select_option("#id_time_zone", "Europe/Paris")
    page.fill("#id_teams_email", "casey@example.com")
    author.shot("profile")
    page.click("#profile-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("Your profile is saved.")

    # Write the campaign.
    page.goto("/admin/campaigns/campaign/add/")
    page.fill("#id_name", "All-hands reminder")
    page.select_option("#id_template", str(template.pk))
    page.select_option("#id_category", str(category.pk))
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    campaign = Campaign.objects.get(name="All-hands reminder")
    assert campaign.created_by == staff["casey"]
    expect(page.locator(".field-approval")).to_contain_text("Needed before it is launched or scheduled")

    # A test, to me, in Teams.
    page.click("#test-send-to-me")
    expect(page.locator(".messagelist")).to_contain_text("sent to you in Teams")
    [test] = engine.wait_until(lambda: teams.client.messages(user=str(me.aad_object_id)), what="the test message")
    assert test["activity"]["text"] == "Hello Casey: the all-hands is on **Friday**."

    # Launching waits for someone else's approval, said before any confirmation; the author asks for it.
    expect(page.get_by_role("link", name="Launch now", exact=True)).to_have_count(0)
    expect(page.locator("#waits-for-approval")).to_contain_text("Waits for approval")
    page.click("#request-approval")
    expect(page.locator(".messagelist")).to_contain_text("Approval of “All-hands reminder” requested")

    approver = open_browser()
    their_page = approver.sign_in("avery")
    their_page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    their_page.get_by_role("link", name="Approve", exact=True).click()
    expect(their_page.locator("body")).to_contain_text(f"to {PEOPLE} people of everyone active")
    # The message as its first person gets it, drawn by the Adaptive Cards renderer's markdown.
    expect(their_page.locator(".crier-card-preview strong")).to_have_text("Friday")
    approver.shot("approve")
    their_page.click("input[value='Yes, approve it']")
    expect(their_page.locator(".messagelist")).to_contain_text("is approved")

    # Schedule it a few seconds ahead, typed in Paris time; the page shows the UTC equivalent.
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    expect(page.locator(".field-approval")).to_contain_text("Approved by avery")
    send_at = (timezone.now() + datetime.timedelta(seconds=12)).astimezone(PARIS).replace(microsecond=0)
    page.fill("#id_send_at_0", send_at.date().isoformat())
    page.fill("#id_send_at_1", send_at.strftime("%H:%M:%S"))
    utc = send_at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    expect(page.locator("#send-at-utc")).to_contain_text(f"That is {utc} UTC")
    author.shot("campaign")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("is still a draft: choose “Schedule”")
    page.get_by_role("link", name="Schedule", exact=True).click()
    page.click("input[value='Yes, schedule it']")
    expect(page.locator(".messagelist")).to_contain_text("is scheduled")
    campaign.refresh_from_db()
    assert campaign.send_at == send_at and campaign.status == Campaign.Status.SCHEDULED

    engine.wait_until(lambda: Campaign.objects.get(pk=campaign.pk).launched_at, what="the scheduled launch")
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/watch/")
    expect(page.locator("#progress-percent")).to_have_text(re.compile(r"^100(\.0)?%$"), timeout=60_000)
    expect(page.locator("#count-sent")).to_have_text(str(PEOPLE))
    expect(page.locator("#watch-status")).to_have_text(re.compile("Completed"), timeout=15_000)
    author.shot("watch")

    received = Counter(m["aad_object_id"] for m in teams.client.messages())
    assert received.pop(str(me.aad_object_id)) == 2  # the test and the announcement
    assert len(received) == PEOPLE - 1 and set(received.values()) == {1}
    launched = Campaign.objects.get(pk=campaign.pk)
    assert launched.launched_at >= send_at

    # Recall it: deleted from every chat it reached, with progress like a send.
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.get_by_role("link", name="Recall the sent message", exact=True).click()
    page.click(f"input[value='Yes, recall it from {PEOPLE} people']")
    expect(page.locator(".messagelist")).to_contain_text("ecall")
    engine.wait_until(lambda: MessageChange.objects.get(campaign=campaign).status == MessageChange.Status.COMPLETED,
                      what="the recall")
    page.reload()
    expect(page.locator(".field-progress")).to_contain_text(f"{PEOPLE} / 0 / {PEOPLE}")
    author.shot("recall")
    announcements = [m for m in teams.client.messages() if m["activity"].get("attachments") or "all-hands" in
                     (m["activity"].get("text") or "")]
    assert len(announcements) == PEOPLE + 1
    deleted = [m for m in announcements if m["deleted"]]
    assert len(deleted) == PEOPLE  # every copy of the announcement; the test message stays
