"""Campaigns in the admin: launch, schedule, cancel and the counts, through delivery.services.

Launch runs inside the test's transaction, so its on_commit work (the Celery fan-out) never runs:
these tests see the delivery rows written at launch and nothing sent."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from delivery import services
from delivery.models import Delivery
from tests import factories

from .conftest import messages_of

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:campaigns_campaign_changelist"


def act(client, action, *campaigns, confirm=False):
    data = {"action": action, "_selected_action": [c.pk for c in campaigns]}
    if confirm:
        data["post"] = "yes"
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_launch_asks_first_and_says_how_many_people_it_reaches(comms_client):
    for _ in range(3):
        factories.recipient()
    campaign = factories.campaign()

    response = act(comms_client, "launch_selected", campaign)

    assert response.status_code == 200
    assert "to 3 people of everyone active" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_launch_action_turns_a_draft_into_running_with_a_delivery_per_person(comms_client):
    people = [factories.recipient() for _ in range(3)]
    campaign = factories.campaign()

    response = act(comms_client, "launch_selected", campaign, confirm=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert set(campaign.deliveries.values_list("recipient_id", flat=True)) == {p.pk for p in people}
    assert ("success", f"“{campaign}” was launched: sending has started.") in messages_of(response)


def test_launching_a_running_campaign_is_an_error_message_not_a_server_error(comms_client):
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    response = act(comms_client, "launch_selected", campaign, confirm=True)

    assert response.status_code == 200
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "only a draft or scheduled campaign can be launched" in text
    assert Campaign.objects.get(pk=campaign.pk).deliveries.count() == 1


def test_cancel_action_skips_whoever_was_not_sent_to(comms_client):
    factories.recipient()
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)

    response = act(comms_client, "cancel_selected", campaign, confirm=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert list(campaign.deliveries.values_list("status", "skip_reason")) == [("skipped", "campaign_cancelled")]
    assert messages_of(response)[0][0] == "success"


def test_cancel_button_on_the_change_page_asks_then_cancels(comms_client):
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    change_page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    button = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "cancel"])
    assert f'href="{button}"' in change_page
    assert "Launch now" not in change_page

    question = comms_client.get(button)
    assert "Cancel for good?" in question.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING
    response = comms_client.post(button, follow=True)

    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.CANCELLED
    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def test_comms_user_creates_a_draft_campaign(comms_client):
    template, category = factories.template(), factories.category()

    response = comms_client.post(
        reverse("admin:campaigns_campaign_add"),
        {"name": "Town hall", "kind": "announcement", "template": template.pk, "category": category.pk, "audience": ""},
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Town hall")
    assert (campaign.status, campaign.template, campaign.category) == (Campaign.Status.DRAFT, template, category)


def test_an_urgent_campaign_without_the_words_of_its_pop_up_is_a_form_error_and_with_them_a_draft(comms_client):
    template, category = factories.template(), factories.category()
    fields = {"kind": "announcement", "template": template.pk, "category": category.pk, "audience": "", "urgent": "on"}

    wordless = comms_client.post(reverse("admin:campaigns_campaign_add"), {**fields, "name": "Closed"})
    worded = comms_client.post(reverse("admin:campaigns_campaign_add"),
                               {**fields, "name": "Closed today", "urgent_text": "The Leeds office is closed today"})

    assert wordless.status_code == 200
    assert "needs the words of its pop-up" in wordless.context["adminform"].form.errors["urgent_text"][0]
    assert worded.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.name, campaign.urgent, campaign.urgent_text) == ("Closed today", True, "The Leeds office is closed today")
    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "it is urgent" in page  # approval is needed, and why


def test_a_policy_in_a_category_people_can_opt_out_of_is_a_form_error_and_in_a_mandatory_one_a_draft(comms_client):
    template, optional, mandatory = factories.template(), factories.category(), factories.category(mandatory=True)
    fields = {"kind": "announcement", "template": template.pk, "audience": "", "acknowledgement": "policy",
              "name": "Security policy"}

    refused = comms_client.post(reverse("admin:campaigns_campaign_add"), {**fields, "category": optional.pk})
    made = comms_client.post(reverse("admin:campaigns_campaign_add"), {**fields, "category": mandatory.pk})

    assert refused.status_code == 200
    assert "choose a mandatory category" in refused.context["adminform"].form.errors["category"][0]
    assert made.status_code == 302
    assert Campaign.objects.get().acknowledgement == Campaign.Acknowledgement.POLICY


def test_moving_a_scheduled_campaign_into_the_past_is_a_form_error(comms_client):
    send_at = timezone.now() + datetime.timedelta(hours=1)
    campaign = factories.campaign()
    services.campaign_schedule(campaign_id=campaign.pk, send_at=send_at)
    past = timezone.localtime() - datetime.timedelta(hours=1)

    response = comms_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "template": campaign.template_id, "category": campaign.category_id, "audience": "",
         "send_at_0": past.strftime("%Y-%m-%d"), "send_at_1": past.strftime("%H:%M:%S"), "_save": "1"},
    )

    assert response.status_code == 200
    assert "Must be in the future" in response.context["adminform"].form.errors["send_at"][0]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.send_at) == (Campaign.Status.SCHEDULED, send_at)


def test_saving_a_draft_with_a_send_time_offers_to_schedule_it(comms_client):
    send_at = timezone.localtime() + datetime.timedelta(days=1)
    campaign = factories.campaign()

    response = comms_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": campaign.name, "template": campaign.template_id, "category": campaign.category_id, "audience": "",
         "send_at_0": send_at.strftime("%Y-%m-%d"), "send_at_1": send_at.strftime("%H:%M:%S"), "_continue": "1"},
        follow=True,
    )

    assert any(level == "warning" and "choose “Schedule”" in text for level, text in messages_of(response))
    assert reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "schedule"]) in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_schedule_action_schedules_a_draft_at_its_send_time(comms_client):
    send_at = timezone.now() + datetime.timedelta(hours=2)
    campaign = factories.campaign(send_at=send_at)

    act(comms_client, "schedule_selected", campaign)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.send_at) == (Campaign.Status.SCHEDULED, send_at)


def test_scheduling_in_the_past_is_an_error_message(comms_client):
    campaign = factories.campaign(send_at=timezone.now() - datetime.timedelta(minutes=5))

    response = act(comms_client, "schedule_selected", campaign)

    assert response.status_code == 200
    [(level, text)] = messages_of(response)
    assert (level, "send_at must be in the future" in text) == ("error", True)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT


def test_a_running_campaign_is_read_only_and_a_forced_save_is_refused(comms_client):
    campaign = factories.campaign(name="Town hall")
    services.campaign_launch(campaign_id=campaign.pk)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    page = comms_client.get(url)
    response = comms_client.post(url, {"name": "Renamed", "template": campaign.template_id, "_save": "1"})

    assert not page.context["adminform"].form.fields  # every field shown read-only
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 200
    assert "only a draft or scheduled campaign can be edited" in str(response.context["adminform"].form.non_field_errors())
    assert Campaign.objects.get(pk=campaign.pk).name == "Town hall"


def launched_with_statuses(statuses):
    people = [factories.recipient() for _ in statuses]
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    for person, status in zip(people, statuses):
        Delivery.objects.filter(campaign=campaign, recipient=person).update(status=status)
    campaign.refresh_from_db()
    return campaign


def test_campaign_list_shows_sent_failed_skipped_and_total_without_counting_rows(comms_client):
    launched_with_statuses(["sent", "sent", "failed", "skipped", "pending"])
    with CaptureQueriesContext(connection) as one_campaign:
        response = comms_client.get(reverse(CHANGELIST))
    for _ in range(3):
        factories.campaign()
    with CaptureQueriesContext(connection) as four_campaigns:
        again = comms_client.get(reverse(CHANGELIST))

    assert "<td class=\"field-delivery_counts\">2 / 1 / 1 / 5</td>" in response.content.decode()
    assert "<td class=\"field-delivery_counts\">2 / 1 / 1 / 5</td>" in again.content.decode()
    # Counters were rebuilt once from the rows (no launch callback ran in this test); then Redis serves them.
    assert len(four_campaigns) < len(one_campaign)
    assert not any("GROUP BY" in query["sql"] for query in four_campaigns.captured_queries)


def test_campaign_page_shows_counts_and_links_to_its_deliveries(comms_client):
    campaign = launched_with_statuses(["sent", "failed"])

    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert "Sent: 1, Read (where Teams reports reads): 0, Failed: 1, Skipped: 0, Still to do: 0" in page
    url = f"{reverse('admin:delivery_delivery_changelist')}?campaign__id__exact={campaign.pk}"
    assert f'<a href="{url}">View 2 deliveries</a>' in page


def test_launching_from_the_change_page_lands_on_the_watch_page(comms_client):
    factories.recipient()
    campaign = factories.campaign()
    button = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "launch"])

    response = comms_client.post(button, follow=True)

    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING
    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_campaign_watch", args=[campaign.pk])
    assert ("success", f"“{campaign}” was launched: sending has started.") in messages_of(response)


def test_launching_one_campaign_from_the_list_lands_on_its_watch_page(comms_client):
    factories.recipient()
    campaign = factories.campaign()

    response = act(comms_client, "launch_selected", campaign, confirm=True)

    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_campaign_watch", args=[campaign.pk])


def test_a_launch_that_fails_stays_on_the_change_page_with_its_reason(comms_client):
    campaign = factories.campaign()
    services.campaign_launch(campaign_id=campaign.pk)
    button = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "launch"])

    response = comms_client.post(button, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert messages_of(response)[0][0] == "error"


def test_a_second_campaign_with_the_same_name_is_saved_with_a_warning(comms_client):
    first = factories.campaign(name="Town hall")
    template, category = factories.template(), factories.category()

    response = comms_client.post(
        reverse("admin:campaigns_campaign_add"),
        {"name": "town hall ", "kind": "announcement", "template": template.pk, "category": category.pk,
         "audience": ""},
        follow=True,
    )

    assert Campaign.objects.filter(name__iexact="town hall").count() == 2
    assert ("warning", f"Another campaign is also called “Town hall” (#{first.pk}): a different name tells them apart "
            "in lists and reports.") in messages_of(response)


def test_a_campaign_saved_under_its_own_name_gets_no_warning(comms_client):
    campaign = factories.campaign(name="Town hall")

    response = comms_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {"name": "Town hall", "template": campaign.template_id, "category": campaign.category_id, "audience": "",
         "_save": "1"},
        follow=True,
    )

    assert response.status_code == 200
    assert [level for level, _ in messages_of(response) if level == "warning"] == []


def test_a_polls_options_are_written_one_a_line_and_kept_as_a_list(comms_client):
    template, category = factories.template(), factories.category()
    fields = {"kind": "announcement", "template": template.pk, "category": category.pk, "audience": "",
              "name": "Summer party", "poll_question": "Where?"}

    one = comms_client.post(reverse("admin:campaigns_campaign_add"), {**fields, "poll_options": "Leeds\n\n"})
    two = comms_client.post(reverse("admin:campaigns_campaign_add"),
                            {**fields, "poll_options": " Leeds \r\nLondon\r\n", "poll_multiple": "on"})

    assert one.status_code == 200 and "from 2 to 10 options" in one.context["adminform"].form.errors["poll_options"][0]
    assert two.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.poll_options, campaign.poll_multiple) == (["Leeds", "London"], True)
    page = comms_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Leeds\nLondon</textarea>" in page  # shown again one a line
