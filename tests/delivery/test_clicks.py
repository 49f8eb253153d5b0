"""Clicks: a campaign that counts them sends its link buttons through Crier, signed for each person; opened, the link
is counted once a person and link and leads on. Nobody can make a link for another person or another address, and a
message taken back leads nowhere."""

from __future__ import annotations

import pytest
from django.core import signing
from django.test import TestCase
from django.urls import reverse

from campaigns.models import MessageTemplate
from delivery import clicks, progress, services
from delivery.message_changes import message_change_process, message_change_start
from delivery.models import Click, Delivery
from delivery.sending import delivery_send
from tests import factories
from tests.delivery.test_acknowledgements import editor, received_card  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.5",
        "body": [{"type": "TextBlock", "text": "The new benefits"},
                 {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Details",
                                                    "url": "https://intranet.example.com/benefits/{{external_id}}"}]}],
        "actions": [{"type": "Action.OpenUrl", "title": "Enrol", "url": "https://hr.example.com/enrol"}]}


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.PUBLIC_BASE_URL = "https://crier.example.com"


def sent(people: int = 1, **fields):
    recipients = [factories.recipient() for _ in range(people)]
    fields.setdefault("template", factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text=""))
    campaign = factories.campaign(track_clicks=True, **fields)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        assert delivery_send(delivery_id=delivery.pk).status == "sent"
    assert services.campaigns_complete_finished() == [campaign.pk]
    campaign.refresh_from_db()
    return campaign, recipients


def links(card: dict) -> list[str]:
    return [action["url"] for action in clicks.open_urls(card)]


def opened(client, url: str):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.get(url.removeprefix("https://crier.example.com"))


def counts(campaign) -> tuple[int, dict[int, int]]:
    read = progress.read(campaign)
    return read["clicked"], read["clicks"]


def test_each_link_button_leads_through_crier_signed_for_the_person(teams):
    campaign, [person, other] = sent(2)

    mine, theirs = links(received_card(teams, person)), links(received_card(teams, other))

    assert len(mine) == 2 and all(url.startswith("https://crier.example.com/c/") for url in mine)
    assert mine != theirs  # one person's links are theirs alone
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    # The token names the delivery, the version and the button: no address, none of the person's values.
    assert signing.loads(mine[0].rsplit("/", 1)[1], salt=clicks.SALT) == [delivery.pk, 1, 0]
    assert person.external_id not in mine[0] and "intranet" not in mine[0]


def test_opening_a_link_counts_it_once_a_person_and_link_and_leads_on(teams, client):
    campaign, [person] = sent()
    details, enrol = links(received_card(teams, person))

    first = opened(client, details)
    again = opened(client, details)
    opened(client, enrol)

    assert first.status_code == 302 and first["Location"] == f"https://intranet.example.com/benefits/{person.external_id}"
    assert first["Referrer-Policy"] == "no-referrer" and "no-store" in first["Cache-Control"]
    assert again["Location"] == first["Location"]
    assert sorted(Click.objects.values_list("link", "clicks")) == [(0, 2), (1, 1)]
    assert counts(campaign) == (1, {0: 1, 1: 1})
    progress.client().delete(progress.key(campaign.pk))
    assert counts(campaign) == (1, {0: 1, 1: 1})  # rebuilt from the rows


@pytest.mark.parametrize("forge", ["someone else", "another address", "garbage"])
def test_a_link_crier_did_not_sign_leads_nowhere_and_says_nothing_of_where(teams, client, forge):
    campaign, [person, other] = sent(2)
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    token = {
        "someone else": signing.dumps([delivery.pk + 1, 1, 0], key="not-the-key", salt=clicks.SALT),
        "another address": signing.dumps([delivery.pk, 1, "https://evil.example"], salt=clicks.SALT),
        "garbage": "abc:def",
    }[forge]

    answer = client.get(reverse("click", args=[token]))

    assert answer.status_code == 404 and b"evil" not in answer.content
    assert not Click.objects.exists()


def test_a_signed_link_to_a_button_or_version_that_is_not_there_leads_nowhere(teams, client):
    campaign, [person] = sent()
    delivery = Delivery.objects.get(campaign=campaign, recipient=person)
    for version, link in ((1, 2), (2, 0), (0, 0), (1, -1)):
        token = signing.dumps([delivery.pk, version, link], salt=clicks.SALT)
        assert client.get(reverse("click", args=[token])).status_code == 404, (version, link)


def test_a_recalled_messages_links_lead_nowhere(teams, client, editor):  # noqa: F811
    campaign, [person] = sent()
    [details, _] = links(received_card(teams, person))
    with TestCase.captureOnCommitCallbacks(execute=True):
        change = message_change_start(campaign_id=campaign.pk, action="recall", user=editor)
    message_change_process(change_id=change.pk)

    assert opened(client, details).status_code == 404
    assert not Click.objects.exists()


def test_a_campaign_that_does_not_count_clicks_sends_its_links_as_written(teams):
    template = factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text="")
    campaign = factories.campaign(template=template)
    person = factories.recipient()
    services.campaign_launch(campaign_id=campaign.pk)
    delivery_send(delivery_id=campaign.deliveries.get().pk)

    assert links(received_card(teams, person)) == [
        f"https://intranet.example.com/benefits/{person.external_id}", "https://hr.example.com/enrol"]


def test_an_edit_and_a_refresh_keep_the_links_counted(teams, editor):  # noqa: F811
    from bots import services as bot
    from campaigns import card_actions
    from tests.delivery.test_acknowledgements import invoke

    campaign, [person] = sent(acknowledgement="asked")
    with TestCase.captureOnCommitCallbacks(execute=True):
        change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="adaptive_card",
                                      card={**CARD, "body": CARD["body"][:1]})
    message_change_process(change_id=change.pk)
    _, answer = bot.invoke_handle(data=invoke(person, card_actions.VERB_REFRESH, {
        "campaign": str(campaign.public_id), "version": 2}))

    assert [url.startswith("https://crier.example.com/c/") for url in links(received_card(teams, person))] == [True]
    assert [url.startswith("https://crier.example.com/c/") for url in links(answer["value"])] == [True]


@pytest.fixture
def api(db):
    from rest_framework.test import APIClient

    from campaigns.api.auth import api_key_create

    _, secret = api_key_create(name="hr-sync")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_the_api_counts_who_opened_each_button(teams, client, api):
    campaign, [person] = sent()
    opened(client, links(received_card(teams, person))[1])

    body = api.get(f"/api/v1/campaigns/{campaign.pk}/").json()

    assert body["track_clicks"] is True and body["counts"]["clicked"] == 1
    assert body["counts"]["clicks"] == [
        {"title": "Details", "url": "https://intranet.example.com/benefits/{{external_id}}", "people": 0},
        {"title": "Enrol", "url": "https://hr.example.com/enrol", "people": 1}]


def test_counting_clicks_needs_the_address_people_reach_crier_at(api, settings):
    settings.PUBLIC_BASE_URL = ""
    answer = api.post("/api/v1/campaigns/", {"name": "Benefits", "template": factories.template().pk,
                                             "category": factories.category().slug, "track_clicks": True},
                      format="json")
    assert answer.status_code == 400 and "PUBLIC_BASE_URL" in answer.json()["error"]["fields"]["track_clicks"][0]


def test_the_funnel_counts_the_people_who_opened_a_link_once_whatever_they_opened(teams, client, monkeypatch):
    from delivery import reports
    from delivery.reports import campaign_funnel

    monkeypatch.setattr(reports, "FUNNEL_SMALLEST", 1)
    campaign, [person, other] = sent(2)
    details, enrol = links(received_card(teams, person))
    opened(client, details)
    opened(client, enrol)  # two buttons, one person

    [group] = campaign_funnel(campaign=campaign, by="country")["groups"]

    assert (group["sent"], group["clicked"]) == (2, 1)


def test_after_an_edit_each_link_leads_where_its_own_versions_button_did(teams, client, editor):  # noqa: F811
    campaign, [person] = sent()
    old_details, old_enrol = links(received_card(teams, person))
    changed = {**CARD, "actions": [{"type": "Action.OpenUrl", "title": "Enrol now", "url": "https://hr.example.com/v2"}]}
    with TestCase.captureOnCommitCallbacks(execute=True):
        change = message_change_start(campaign_id=campaign.pk, action="edit", user=editor, kind="adaptive_card",
                                      card={**changed, "body": changed["body"][:1]})
    message_change_process(change_id=change.pk)
    [new_enrol] = links(received_card(teams, person))

    assert opened(client, old_enrol)["Location"] == "https://hr.example.com/enrol"  # version 1's button
    assert opened(client, new_enrol)["Location"] == "https://hr.example.com/v2"


def test_deleting_a_person_takes_their_clicks_along(teams, client):
    campaign, [person, other] = sent(2)
    opened(client, links(received_card(teams, person))[0])

    person.delete()

    assert not Click.objects.exists()
    assert progress.rebuild(campaign.pk)["clicked"] == 0


def test_a_person_whose_row_is_not_marked_sent_is_still_led_on(teams, client):
    """Teams may hold a message whose send was recorded failed (a worker stopped while Teams answered)."""
    campaign, [person] = sent()
    details = links(received_card(teams, person))[0]
    Delivery.objects.filter(recipient=person).update(status=Delivery.Status.FAILED, ambiguous=True)

    assert opened(client, details).status_code == 302


def test_a_former_secret_key_still_leads_its_links(teams, client, settings):
    campaign, [person] = sent()
    details = links(received_card(teams, person))[0]
    former = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-key", [former]
    assert opened(client, details).status_code == 302
    settings.SECRET_KEY_FALLBACKS = []
    assert opened(client, details).status_code == 404


def test_teams_own_deep_links_are_left_as_they_are(teams):
    deep = "https://teams.microsoft.com/l/chat/0/0?users=someone@example.com"
    card = {**CARD, "actions": [{"type": "Action.OpenUrl", "title": "Chat", "url": deep}, *CARD["actions"]]}
    campaign, [person] = sent(template=factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=card, text=""))

    actions = received_card(teams, person)["actions"]

    assert actions[0]["url"] == deep and actions[1]["url"].startswith("https://crier.example.com/c/")


def test_a_campaign_that_counts_clicks_is_not_launched_without_the_address_people_reach_crier_at(teams, settings):
    from core.errors import ApplicationError

    factories.recipient()
    campaign = factories.campaign(track_clicks=True)
    settings.PUBLIC_BASE_URL = ""

    with pytest.raises(ApplicationError, match="PUBLIC_BASE_URL"):
        services.campaign_launch(campaign_id=campaign.pk)
