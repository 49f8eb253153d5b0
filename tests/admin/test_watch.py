"""The campaign watch page, its data endpoint and the CSV export, with deliveries driven through the
engine against the emulator. Launch runs inside the test's transaction, so nothing is sent but what
a test sends itself."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from delivery import services
from delivery.sending import delivery_send
from campaigns.models import AuditEntry, Campaign, StaffProfile
from tests import factories

pytestmark = pytest.mark.django_db


def watch(campaign) -> str:
    return reverse("admin:campaigns_campaign_watch", args=[campaign.pk])


def data(campaign) -> str:
    return reverse("admin:campaigns_campaign_watch_data", args=[campaign.pk])


def export(campaign) -> str:
    return reverse("admin:campaigns_campaign_export", args=[campaign.pk])


def transition(campaign, name) -> str:
    return reverse("admin:campaigns_campaign_transition", args=[campaign.pk, name])


@pytest.fixture
def sending(teams):
    """A running campaign to four people: one sent, one failed (blocked the bot), one skipped at
    launch (no Teams identity), one still to do."""
    people = [factories.recipient(external_id=f"watch-{n}") for n in range(2)]
    people.append(factories.recipient(external_id="watch-2", aad_object_id=None))
    people.append(factories.recipient(external_id="watch-3"))
    teams.client.register_users([{"aad_object_id": str(people[1].aad_object_id), "name": "Blocker"}])
    teams.client.block(str(people[1].aad_object_id))
    campaign = factories.campaign(name="Office move: Friday")
    services.campaign_launch(campaign_id=campaign.pk)
    for person in people[:2]:
        delivery_send(delivery_id=campaign.deliveries.get(recipient=person).pk)
    campaign.refresh_from_db()
    return campaign


def test_the_page_shows_progress_reasons_and_the_controls_of_a_running_campaign(comms_client, sending):
    response = comms_client.get(watch(sending))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<progress id="progress-bar" max="4" value="3"' in page
    assert '<strong id="progress-percent">75.0%</strong>' in page
    assert '<dd id="count-sent">1</dd>' in page and '<dd id="count-remaining">1</dd>' in page
    assert "This person blocked the bot or uninstalled the app: they are recorded as opted out." in page
    assert "campaign__id__exact={}&amp;status__exact=failed&amp;error_code=ConversationBlockedByUser".format(
        sending.pk
    ) in page
    assert "status__exact=skipped&amp;skip_reason__exact=no_teams_identity" in page
    assert f'href="{transition(sending, "pause")}"' in page and f'href="{transition(sending, "cancel")}"' in page
    assert transition(sending, "resume") not in page
    assert f'href="{export(sending)}"' in page
    assert "vendor/chart.js/chart.umd.min.js" in page and "crier/watch.js" in page
    assert f'data-url="{data(sending)}"' in page
    assert response.context["data"]["poll"] is True


def test_the_chart_speaks_in_the_staff_members_own_time_zone(comms_client, comms_user, sending):
    assert 'data-zone="UTC"' in comms_client.get(watch(sending)).content.decode()

    StaffProfile.objects.create(user=comms_user, time_zone="Asia/Kolkata")

    assert 'data-zone="Asia/Kolkata"' in comms_client.get(watch(sending)).content.decode()


def test_the_page_of_a_completed_campaign_offers_no_controls_and_refreshes_slowly_for_its_reads(comms_client, sending):
    delivery_send(delivery_id=sending.deliveries.get(recipient__external_id="watch-3").pk)
    assert services.campaigns_complete_finished() == [sending.pk]

    response = comms_client.get(watch(sending))

    page = response.content.decode()
    assert response.status_code == 200
    assert '<strong id="progress-percent">100.0%</strong>' in page
    assert "Completed" in page
    assert "/do/" not in page.replace(transition(sending, "send_again"), "")  # no pause, resume or cancel
    # It failed for someone: it may be sent again to them (who blocked the app is left out then).
    assert f'href="{transition(sending, "send_again")}"' in page
    # Reads, reactions, acknowledgements and answers still come in: every ten seconds, for as long as reads do.
    assert (response.context["data"]["poll"], response.context["data"]["poll_seconds"]) == (True, 10)
    Campaign.objects.filter(pk=sending.pk).update(launched_at=timezone.now() - datetime.timedelta(days=91))
    assert comms_client.get(watch(sending)).context["data"]["poll"] is False


def test_the_data_endpoint_gives_progress_timeline_reasons_and_actions(comms_client, sending):
    response = comms_client.get(data(sending))

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "running" and body["status_reason"] == "" and body["poll"] is True
    progress = body["progress"]
    assert {k: progress[k] for k in ("total", "sent", "failed", "skipped", "remaining", "ambiguous")} == {
        "total": 4, "sent": 1, "failed": 1, "skipped": 1, "remaining": 1, "ambiguous": 0,
    }
    assert set(progress) >= {"rate_per_second", "eta_seconds"}
    assert (body["done"], body["percent"]) == (3, 75.0)
    assert {k: body["timeline"][-1][k] for k in ("sent", "failed", "skipped")} == {"sent": 1, "failed": 1, "skipped": 1}
    [failure] = body["failure_reasons"]
    assert (failure["error_code"], failure["status_code"], failure["count"]) == ("ConversationBlockedByUser", 403, 1)
    assert failure["meaning"] and failure["action"] and "error_code=ConversationBlockedByUser" in failure["url"]
    [skip] = body["skip_reasons"]
    assert (skip["skip_reason"], skip["count"]) == ("no_teams_identity", 1)
    assert skip["label"] == "No Entra object id or Teams address" and "skip_reason__exact=no_teams_identity" in skip["url"]
    assert [(a["name"], a["url"]) for a in body["actions"]] == [
        ("pause", transition(sending, "pause")), ("cancel", transition(sending, "cancel"))
    ]
    assert body["export_url"] == export(sending)


def test_a_paused_campaign_offers_resume_and_says_why_it_paused(comms_client, sending):
    services.campaign_pause(campaign_id=sending.pk, reason="Checking the wording.")

    body = comms_client.get(data(sending)).json()

    assert (body["status"], body["status_reason"], body["poll"]) == ("paused", "Checking the wording.", True)
    assert [a["name"] for a in body["actions"]] == ["resume", "cancel"]
    assert body["time_left"] == ""


def test_the_data_follows_the_campaign_as_it_sends(comms_client, sending):
    comms_client.get(data(sending))
    delivery_send(delivery_id=sending.deliveries.get(recipient__external_id="watch-3").pk)

    body = comms_client.get(data(sending)).json()

    assert (body["progress"]["sent"], body["progress"]["remaining"], body["percent"]) == (2, 0, 100.0)
    assert body["timeline"][-1]["sent"] == 2


def test_a_viewer_watches_without_the_controls(client, viewer_user, sending):
    client.force_login(viewer_user)

    page = client.get(watch(sending))
    body = client.get(data(sending)).json()

    assert page.status_code == 200 and "/do/" not in page.content.decode()
    assert body["actions"] == []


def test_the_export_is_every_delivery_of_the_campaign_as_csv(comms_client, sending):
    other = factories.campaign()  # another campaign to the same people: its rows stay out
    services.campaign_launch(campaign_id=other.pk)
    assert other.deliveries.count() == 4
    response = comms_client.get(export(sending))

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="campaign-{sending.pk}-office-move-friday-deliveries.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["external_id"], r["status"], r["skip_reason"], r["error_code"]) for r in rows] == [
        ("watch-0", "sent", "", ""),
        ("watch-1", "failed", "", "ConversationBlockedByUser"),
        ("watch-2", "skipped", "no_teams_identity", ""),
        ("watch-3", "pending", "", ""),
    ]
    assert rows[1]["last_status_code"] == "403"
    [entry] = AuditEntry.objects.filter(action=AuditEntry.Action.EXPORT)
    assert (entry.campaign, entry.user.username) == (sending, "casey")


def test_the_export_neutralises_a_hostile_external_id(comms_client):
    campaign = factories.campaign()
    factories.recipient(external_id='=HYPERLINK("https://evil.example","Open")')
    services.campaign_launch(campaign_id=campaign.pk)

    response = comms_client.get(export(campaign))

    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert row["external_id"] == '\'=HYPERLINK("https://evil.example","Open")'


def test_staff_without_view_permission_on_campaigns_are_refused(client, sending):
    client.force_login(User.objects.create_user("nina", "nina@example.com", "not-a-superuser", is_staff=True))

    for url in (watch(sending), data(sending), export(sending),
                reverse("admin:campaigns_campaign_poll", args=[sending.pk]),
                reverse("admin:campaigns_campaign_acknowledgements", args=[sending.pk]),
                reverse("admin:campaigns_campaign_watch_funnel", args=[sending.pk])):
        assert client.get(url).status_code == 403, url


def test_an_unknown_campaign_is_not_found(comms_client):
    for url in (
        reverse("admin:campaigns_campaign_watch", args=[987654]),
        reverse("admin:campaigns_campaign_watch_data", args=[987654]),
        reverse("admin:campaigns_campaign_export", args=[987654]),
        reverse("admin:campaigns_campaign_watch", args=["not-a-number"]),
    ):
        assert comms_client.get(url).status_code == 404, url


@pytest.fixture
def welcoming(teams):
    """A running welcome campaign: two people arrived, one of them welcomed so far."""
    from campaigns.models import Campaign
    from delivery import welcome

    people = [factories.recipient(external_id=f"starter-{n}") for n in range(2)]
    campaign = factories.campaign(name="Welcome aboard", kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=campaign.pk)
    for person in people:
        welcome.welcome_on_install(aad_object_id=str(person.aad_object_id))
    delivery_send(delivery_id=campaign.deliveries.get(recipient=people[0]).pk)
    campaign.refresh_from_db()
    return campaign


def test_a_welcome_campaign_counts_the_people_welcomed_not_a_share_of_nobody(comms_client, welcoming):
    response = comms_client.get(watch(welcoming))

    page = response.content.decode()
    assert '<span id="progress-done">1 welcomed</span>' in page
    assert "people done" not in page and 'id="progress-percent"' not in page
    assert '<dd id="count-remaining">1</dd>' in page  # the second person's welcome is on its way
    assert comms_client.get(data(welcoming)).json()["summary"] == "1 welcomed"


def test_the_campaign_list_says_how_many_a_welcome_campaign_welcomed(comms_client, welcoming):
    page = comms_client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()

    assert "1 welcomed" in page
    assert "1 / 0 / 0 / 0" not in page


def test_the_export_quotes_every_cell_and_neutralises_a_formula_after_a_semicolon(comms_client):
    campaign = factories.campaign()
    factories.recipient(external_id="E1;=cmd|' /C calc'!A0")
    services.campaign_launch(campaign_id=campaign.pk)

    response = comms_client.get(export(campaign))

    text = b"".join(response.streaming_content).decode()
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["external_id"] == "E1;'=cmd|' /C calc'!A0"


def test_the_page_shows_the_acknowledgements_and_the_poll_live_with_their_exports(comms_client, teams):
    from delivery.models import Acknowledgement, PollAnswer

    person = factories.recipient(external_id="poll-0")
    campaign = factories.campaign(name="Summer party", acknowledgement="asked", poll_question="Where <b>?</b>",
                                  poll_options=["Leeds", "<script>x</script>"])
    services.campaign_launch(campaign_id=campaign.pk)
    delivery = campaign.deliveries.get(recipient=person)
    delivery_send(delivery_id=delivery.pk)
    PollAnswer.objects.create(delivery_id=delivery.pk, choices=[1])
    Acknowledgement.objects.create(delivery_id=delivery.pk, version=1, via="button")
    from delivery import progress

    progress.rebuild(campaign.pk)

    page = comms_client.get(watch(campaign)).content.decode()
    payload = comms_client.get(data(campaign)).json()
    answers = comms_client.get(reverse("admin:campaigns_campaign_poll", args=[campaign.pk]))
    acknowledgements = comms_client.get(reverse("admin:campaigns_campaign_acknowledgements", args=[campaign.pk]))

    assert "Poll: Where &lt;b&gt;?&lt;/b&gt;" in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert 'id="count-acknowledged"' in page and "Answers (CSV)" in page and "Who acknowledged (CSV)" in page
    assert payload["poll_results"]["answered"] == 1
    assert [(o["option"], o["count"], o["percent"]) for o in payload["poll_results"]["options"]] == [
        ("Leeds", 0, 0.0), ("<script>x</script>", 1, 100.0)]
    rows = list(csv.DictReader(io.StringIO(b"".join(answers.streaming_content).decode())))
    assert [(r["external_id"], r["answer"]) for r in rows] == [("poll-0", "<script>x</script>")]
    assert b"poll-0" in b"".join(acknowledgements.streaming_content)
    assert AuditEntry.objects.filter(action=AuditEntry.Action.EXPORT, campaign=campaign).count() == 2


def test_the_funnel_is_given_by_the_field_asked_for_and_refuses_any_other(comms_client, sending):
    url = reverse("admin:campaigns_campaign_watch_funnel", args=[sending.pk])

    page = comms_client.get(watch(sending)).content.decode()
    by_country = comms_client.get(url, {"by": "country"})
    refused = comms_client.get(url, {"by": "email"})

    assert 'id="watch-funnel"' in page and '<option value="department">' in page
    assert by_country.status_code == 200
    assert by_country.json()["groups"] == []  # one person sent it: no line may show them
    assert refused.status_code == 400 and "Group by one of" in refused.json()["error"]
