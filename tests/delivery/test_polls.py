"""Polls: a campaign's card asks a question with its options (one choice, or several); a person answers with the
card's button (Universal Actions' invoke), may change their answer until the poll closes, and sees it in their card.
Answers are counted per option, only for the person the message was sent to, only with the poll's own options."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.test import TestCase
from django.utils import timezone

from bots import services as bot
from campaigns import card_actions
from campaigns.models import Campaign, MessageTemplate
from delivery import progress, services, webhooks
from delivery.exports import poll_answers_csv
from delivery.models import Delivery, PollAnswer, WebhookEndpoint, WebhookEvent
from delivery.sending import delivery_send
from tests import factories
from tests.delivery.test_acknowledgements import invoke, received_card

pytestmark = pytest.mark.django_db

CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Summer party, {{first_name}}"}]}
OPTIONS = ["Leeds", "London", "Online"]


def sent(people: int = 1, **fields) -> tuple[Campaign, list]:
    recipients = [factories.recipient() for _ in range(people)]
    fields.setdefault("template", factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text=""))
    fields.setdefault("poll_question", "Where should it be?")
    fields.setdefault("poll_options", OPTIONS)
    campaign = factories.campaign(**fields)
    services.campaign_launch(campaign_id=campaign.pk)
    for delivery in campaign.deliveries.all():
        assert delivery_send(delivery_id=delivery.pk).status == "sent"
    campaign.refresh_from_db()
    return campaign, recipients


def answered(person, campaign: Campaign, choice, **more) -> dict:
    data = {"crier_action": "answer", "campaign": str(campaign.public_id), "version": 1, **more}
    if choice is not None:
        data[card_actions.POLL_INPUT] = choice
    with TestCase.captureOnCommitCallbacks(execute=True):
        status, body = bot.invoke_handle(data=invoke(person, card_actions.VERB_ANSWER, data))
    assert status == 200
    return body


def counts(campaign: Campaign) -> tuple[int, dict[int, int]]:
    read = progress.read(campaign)
    return read["answered"], {n: c for n, c in read["poll"].items() if c}


def poll_part(card: dict) -> dict:
    return next(e for e in card["body"] if e.get("id") == card_actions.POLL_PART)


def choice_set(card: dict) -> dict | None:
    return next((item for item in poll_part(card)["items"] if item["type"] == "Input.ChoiceSet"), None)


def texts(card: dict) -> list[str]:
    return [item["text"] for item in poll_part(card)["items"] if item["type"] == "TextBlock"]


def test_the_card_sent_asks_the_question_with_the_options_and_an_answer_button(teams):
    campaign, [person] = sent()

    card = received_card(teams, person)

    assert texts(card) == ["Where should it be?"]
    choices = choice_set(card)
    assert (choices["id"], choices["isMultiSelect"], choices["style"]) == ("crier_poll", False, "expanded")
    assert choices["choices"] == [{"title": "Leeds", "value": "0"}, {"title": "London", "value": "1"},
                                  {"title": "Online", "value": "2"}]
    [button] = poll_part(card)["items"][-1]["actions"]
    assert (button["type"], button["verb"], button["title"]) == ("Action.Execute", "crier.answer", "Answer")
    assert button["fallback"]["type"] == "Action.Submit" and button["fallback"]["data"] == button["data"]
    assert card["refresh"]["action"]["verb"] == "crier.refresh"
    assert all(e.get("id") != card_actions.ACKNOWLEDGE_PART for e in card["body"])  # it asks no acknowledgement


def test_an_answer_is_recorded_counted_and_shown_in_the_persons_card(teams):
    campaign, [person, other] = sent(2)

    card = answered(person, campaign, "1")["value"]

    assert list(PollAnswer.objects.values_list("choices", flat=True)) == [[1]]
    assert counts(campaign) == (1, {1: 1})
    assert choice_set(card)["value"] == "1"  # their choice, chosen in their card
    assert texts(card)[-1].startswith("✅ Your answer: London, on {{DATE(") and "You can change it." in texts(card)[-1]
    assert poll_part(card)["items"][-1]["actions"][0]["title"] == "Change my answer"
    other_view = bot.invoke_handle(data=invoke(other, card_actions.VERB_REFRESH, {
        "campaign": str(campaign.public_id), "version": 1}))[1]["value"]
    assert "value" not in choice_set(other_view)  # the other person's card: still to answer


def test_an_answer_can_be_changed_and_the_counts_follow_it_once(teams):
    campaign, [person] = sent()
    answered(person, campaign, "1")

    answered(person, campaign, "2")
    answered(person, campaign, "2")  # the same answer again changes nothing

    answer = PollAnswer.objects.get()
    assert answer.choices == [2] and answer.changed_at is not None
    assert counts(campaign) == (1, {2: 1})


def test_a_poll_with_several_answers_takes_several_and_a_single_choice_poll_one(teams):
    several, [person] = sent(poll_multiple=True)
    single, [someone] = sent()

    card = answered(person, several, "2,0")["value"]
    refused = answered(someone, single, "0,2")

    assert PollAnswer.objects.get(delivery__campaign=several).choices == [0, 2]
    assert counts(several) == (1, {0: 1, 2: 1})
    assert choice_set(card)["value"] == "0,2" and "Leeds, Online" in texts(card)[-1]
    assert refused["statusCode"] == 400 and refused["value"]["message"] == "This poll takes one answer: choose one option."
    assert counts(single) == (0, {})


@pytest.mark.parametrize("choice", ["3", "-1", "1,1", "a", "", " 1", "1.0", "٣", "0," * 40, None, ["1"], {"x": 1}, True])
def test_an_answer_the_poll_does_not_have_is_refused_and_records_nothing(teams, choice):
    campaign, [person] = sent(poll_multiple=True)

    answer = answered(person, campaign, choice)

    assert answer["statusCode"] == 400 and answer["type"] == "application/vnd.microsoft.error"
    assert not PollAnswer.objects.exists() and counts(campaign) == (0, {})


def test_nobody_answers_for_someone_else_or_a_poll_they_were_not_sent(teams):
    campaign, _ = sent()
    stranger = factories.recipient()

    assert answered(stranger, campaign, "0")["statusCode"] == 403
    assert not PollAnswer.objects.exists()


def test_a_closed_poll_takes_no_answer_and_shows_what_the_person_answered(teams):
    campaign, [person, silent] = sent(2, poll_closes_at=timezone.now() + datetime.timedelta(hours=1))
    answered(person, campaign, "0")
    Campaign.objects.filter(pk=campaign.pk).update(poll_closes_at=timezone.now() - datetime.timedelta(minutes=1))

    card = answered(person, campaign, "2")["value"]
    silent_card = answered(silent, campaign, "2")["value"]
    value = {"crier_action": "answer", "campaign": str(campaign.public_id), "version": 1, "crier_poll": "1"}
    message = {**invoke(person, "", value), "type": "message", "name": None, "value": value}
    replies = bot.activity_handle(data=message)  # the fallback of an older Teams

    assert PollAnswer.objects.get().choices == [0] and counts(campaign) == (1, {0: 1})
    assert choice_set(card) is None and "This poll closed on {{DATE(" in texts(card)[-1]
    assert texts(card)[-1].endswith("Your answer: Leeds.")
    assert texts(silent_card)[-1].endswith("You did not answer.")
    assert all(item["type"] != "ActionSet" for item in poll_part(card)["items"])
    assert replies == [bot.REPLY_CLOSED]


def test_the_fallback_of_an_older_teams_records_the_answer_and_answers_in_words(teams):
    campaign, [person] = sent()
    value = {"crier_action": "answer", "campaign": str(campaign.public_id), "version": 1, "crier_poll": "2"}
    message = {**invoke(person, "", value), "type": "message", "name": None, "value": value}

    with TestCase.captureOnCommitCallbacks(execute=True):
        replies = bot.activity_handle(data=message)

    assert replies == [bot.REPLY_ANSWERED]
    assert counts(campaign) == (1, {2: 1})


def test_poll_counts_are_rebuilt_from_the_rows_when_the_counters_are_lost(teams):
    campaign, people = sent(3, poll_multiple=True)
    answered(people[0], campaign, "0,1")
    answered(people[1], campaign, "1")
    progress.client().delete(progress.key(campaign.pk))

    assert counts(campaign) == (2, {0: 1, 1: 2})


def test_the_answers_export_lists_each_persons_answer_by_its_words(teams):
    campaign, people = sent(2, poll_multiple=True)
    answered(people[0], campaign, "0,2")
    answered(people[1], campaign, "1")

    lines = list(csv.DictReader(io.StringIO("".join(poll_answers_csv(campaign_id=campaign.pk, options=OPTIONS)))))

    assert [(line["external_id"], line["answer"]) for line in lines] == [
        (people[0].external_id, "Leeds; Online"), (people[1].external_id, "London")]


def test_an_endpoint_that_subscribes_hears_of_each_answer_and_change(teams):
    WebhookEndpoint.objects.create(name="hr", url="https://hr.example/hook", secret="s", events=["poll.answered"])
    webhooks.forget_subscriptions()
    campaign, [person] = sent()

    answered(person, campaign, "0")
    answered(person, campaign, "0")  # nothing changed: no event
    answered(person, campaign, "1")

    events = [(e.payload["choices"], e.payload["changed"], e.payload["recipient"])
              for e in WebhookEvent.objects.filter(type="poll.answered").order_by("id")]
    assert events == [(["Leeds"], False, person.external_id), (["London"], True, person.external_id)]


def test_a_campaign_with_a_poll_and_an_acknowledgement_keeps_both_in_the_persons_view(teams):
    campaign, [person] = sent(acknowledgement="asked")
    answered(person, campaign, "2")
    with TestCase.captureOnCommitCallbacks(execute=True):
        _, body = bot.invoke_handle(data=invoke(person, card_actions.VERB_ACKNOWLEDGE, {
            "campaign": str(campaign.public_id), "version": 1}))

    card = body["value"]
    assert choice_set(card)["value"] == "2"
    acknowledged = next(e for e in card["body"] if e.get("id") == card_actions.ACKNOWLEDGE_PART)
    assert acknowledged["items"][0]["text"].startswith("✅ Acknowledged on")
    assert Delivery.objects.get(campaign=campaign, recipient=person).acknowledged_at is not None


@pytest.fixture
def bot_endpoint(teams, live_server):
    from django.urls import reverse

    teams.client.config(bot_endpoint=f"{live_server.url}{reverse('bot-messages')}")


def test_answered_in_teams_the_person_sees_their_answer_and_crier_counts_it(teams, bot_endpoint, transactional_db):
    campaign, [person] = sent()

    answer = teams.client.execute(str(person.aad_object_id), action="Answer", inputs={"crier_poll": "2"})

    assert answer["bot_status"] == 200 and answer["outcome"] == "card"
    assert choice_set(answer["card"])["value"] == "2"
    assert answer["invoke"]["value"]["action"]["data"]["crier_poll"] == "2"
    assert counts(campaign) == (1, {2: 1})


def test_the_funnel_groups_who_was_sent_read_acknowledged_and_answered_by_a_field_or_an_attribute(teams, monkeypatch):
    from delivery import reports
    from delivery.reads import reads_record

    monkeypatch.setattr(reports, "FUNNEL_SMALLEST", 1)  # groups of one, to see each count

    campaign, people = sent(4, acknowledgement="asked")
    for person, department, site in zip(people, ["Sales", "Sales", "", "Legal"], ["Leeds", "Leeds", "York", None]):
        person.department = department
        person.attributes = {"site": site} if site else {}
        person.save()
    delivery = {p.pk: Delivery.objects.get(campaign=campaign, recipient=p) for p in people}
    reads_record(aad_object_id=str(people[0].aad_object_id), last_read=delivery[people[0].pk].activity_id)
    answered(people[0], campaign, "1")
    answered(people[3], campaign, "0")
    with TestCase.captureOnCommitCallbacks(execute=True):
        bot.invoke_handle(data=invoke(people[1], card_actions.VERB_ACKNOWLEDGE, {
            "campaign": str(campaign.public_id), "version": 1}))

    by_department = reports.campaign_funnel(campaign=campaign, by="department")
    by_site = reports.campaign_funnel(campaign=campaign, by="attributes.site")

    assert by_department["groups"] == [
        {"value": "Sales", "sent": 2, "read": 1, "acknowledged": 1, "answered": 1, "clicked": 0},
        {"value": "(none)", "sent": 1, "read": 0, "acknowledged": 0, "answered": 0, "clicked": 0},
        {"value": "Legal", "sent": 1, "read": 0, "acknowledged": 0, "answered": 1, "clicked": 0},
    ]
    assert [(g["value"], g["sent"]) for g in by_site["groups"]] == [("Leeds", 2), ("(none)", 1), ("York", 1)]
    assert by_site["acknowledgement"] and by_site["poll"]
    for hostile in ("id; DROP TABLE", "attributes.", "attributes.a b", "email", "aad_object_id"):
        with pytest.raises(ValueError):
            reports.campaign_funnel(campaign=campaign, by=hostile)


def test_the_funnel_over_time_counts_by_the_end_of_each_hour_what_people_did(teams):
    from delivery import reports

    campaign, people = sent(3, acknowledgement="asked")
    rows = {p.pk: Delivery.objects.get(campaign=campaign, recipient=p) for p in people}
    nine = datetime.datetime(2026, 12, 1, 9, 15, tzinfo=datetime.timezone.utc)
    Delivery.objects.filter(campaign=campaign).update(finished_at=nine)
    Delivery.objects.filter(pk=rows[people[0].pk].pk).update(read_at=nine + datetime.timedelta(minutes=20),
                                                            acknowledged_at=nine + datetime.timedelta(hours=2))
    Delivery.objects.filter(pk=rows[people[1].pk].pk).update(read_at=nine + datetime.timedelta(hours=2))
    PollAnswer.objects.create(delivery=rows[people[2].pk], choices=[0], answered_at=nine + datetime.timedelta(hours=5))
    failed = factories.recipient()  # a row that was never sent counts nowhere
    Delivery.objects.create(id=(campaign.pk << 32) + failed.pk, campaign=campaign, recipient=failed,
                            status=Delivery.Status.FAILED, finished_at=nine, read_at=nine)

    points = reports.engagement_over_time(campaign=campaign)

    hour = int(datetime.datetime(2026, 12, 1, 9, tzinfo=datetime.timezone.utc).timestamp())
    assert points == [
        {"hour": hour, "sent": 3, "read": 1, "acknowledged": 0, "answered": 0, "clicked": 0},
        {"hour": hour + 7200, "sent": 3, "read": 2, "acknowledged": 1, "answered": 0, "clicked": 0},
        {"hour": hour + 5 * 3600, "sent": 3, "read": 2, "acknowledged": 1, "answered": 1, "clicked": 0},
    ]
    assert reports.campaign_funnel(campaign=campaign, by="department")["over_time"] == points


def test_past_the_largest_groups_the_funnel_adds_the_rest_up_in_one_line(teams, monkeypatch):
    from delivery import reports

    monkeypatch.setattr(reports, "FUNNEL_GROUPS", 1)
    monkeypatch.setattr(reports, "FUNNEL_SMALLEST", 1)
    campaign, people = sent(3)
    for person, department in zip(people, ["A", "A", "B"]):
        person.department = department
        person.save()

    groups = reports.campaign_funnel(campaign=campaign, by="department")["groups"]

    assert [(g["value"], g["sent"]) for g in groups] == [("A", 2), ("(all others)", 1)]


def test_an_unanswered_poll_holds_back_no_other_button_of_the_card():
    """Teams checks and sends every input a button names (all of them by default): the acknowledgement names none,
    and the poll's choice is not required of the card, so an unanswered poll never blocks the acknowledgement or the
    author's own opt-out button."""
    ask = card_actions.ask_of(public_id="00000000-0000-0000-0000-000000000001", version=1, mode="policy",
                              poll=card_actions.Poll(question="Q", options=("a", "b")))
    _, _, card = card_actions.content_asking(kind="adaptive_card", text="", card=CARD, ask=ask)
    poll, acknowledge = card["body"][-2:]
    choices = next(item for item in poll["items"] if item["type"] == "Input.ChoiceSet")
    [button] = acknowledge["items"][-1]["actions"]
    [answer] = poll["items"][-1]["actions"]

    assert "isRequired" not in choices
    assert button["associatedInputs"] == button["fallback"]["associatedInputs"] == "none"
    assert answer["associatedInputs"] == answer["fallback"]["associatedInputs"] == "auto"


def test_a_poll_that_closed_before_its_message_was_sent_is_sent_closed(teams):
    campaign, [person] = sent(poll_closes_at=timezone.now() + datetime.timedelta(hours=1))
    welcome_later = factories.recipient()
    Campaign.objects.filter(pk=campaign.pk).update(poll_closes_at=timezone.now() - datetime.timedelta(minutes=1))
    Delivery.objects.create(id=(campaign.pk << 32) + welcome_later.pk, campaign=campaign, recipient=welcome_later)
    assert delivery_send(delivery_id=(campaign.pk << 32) + welcome_later.pk).status == "sent"

    card = received_card(teams, welcome_later)

    assert choice_set(card) is None and all(item["type"] != "ActionSet" for item in poll_part(card)["items"])
    assert texts(card)[-1].startswith("This poll closed on {{DATE(")


def test_an_answer_is_taken_while_an_edit_holds_the_campaign(teams, transactional_db):
    """An answer does not depend on the message's version: it waits for no edit."""
    from tests.threads import row_locked

    campaign, [person] = sent()
    with row_locked(Campaign, campaign.pk):
        answer = answered(person, campaign, "1")
    assert answer["statusCode"] == 200 and counts(campaign) == (1, {1: 1})


def test_an_invoke_without_the_cards_message_is_taken_as_the_fallback_is(teams):
    campaign, [person] = sent()
    data = {"crier_action": "answer", "campaign": str(campaign.public_id), "version": 1, "crier_poll": "1"}
    activity = invoke(person, card_actions.VERB_ANSWER, data)
    del activity["replyToId"]

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert bot.invoke_handle(data=activity)[1]["statusCode"] == 200
    assert counts(campaign) == (1, {1: 1})


def test_scheduling_a_poll_that_closes_before_it_is_sent_is_refused(teams):
    from core.errors import ApplicationError

    campaign = factories.campaign(poll_question="Q?", poll_options=["a", "b"],
                                  poll_closes_at=timezone.now() + datetime.timedelta(hours=1))
    with pytest.raises(ApplicationError) as refused:
        services.campaign_schedule(campaign_id=campaign.pk, send_at=timezone.now() + datetime.timedelta(days=2))
    assert refused.value.code == "asks_invalid" and "closes before" in refused.value.message


def test_a_test_send_or_a_campaign_that_sent_nothing_leaves_the_template_editable(teams):
    from campaigns.approvals import template_edit_require

    template = factories.template(kind=MessageTemplate.Kind.ADAPTIVE_CARD, card=CARD, text="")
    draft = factories.campaign(template=template, poll_question="Where?", poll_options=OPTIONS)
    me = factories.recipient()
    test = services.campaign_send_direct(name="Test", template_id=template.pk, category=draft.category,
                                         external_ids=[me.external_id], asking_like=draft)
    assert delivery_send(delivery_id=test.deliveries.get().pk).status == "sent"
    assert test.pk in services.campaigns_complete_finished()
    nothing = factories.campaign(template=template, poll_question="Where?", poll_options=OPTIONS)
    services.campaign_launch(campaign_id=nothing.pk)
    services.campaign_cancel(campaign_id=nothing.pk)  # cancelled before it sent anything

    template_edit_require(template_id=template.pk)  # editable still


def test_a_funnel_shows_no_group_of_fewer_than_five_people(teams):
    from delivery import reports

    campaign, people = sent(6)
    for n, person in enumerate(people):
        person.department = "Legal" if n == 0 else "Sales"  # Legal: one person, whose answer would show
        person.save()
    answered(people[0], campaign, "2")

    groups = reports.campaign_funnel(campaign=campaign, by="department")["groups"]

    # Legal's one person goes to "(all others)", which, of one person, is left out too.
    assert [(g["value"], g["sent"], g["answered"]) for g in groups] == [("Sales", 5, 0)]
