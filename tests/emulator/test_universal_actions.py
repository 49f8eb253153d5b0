"""Universal Actions in the emulator: a person presses an ``Action.Execute`` of the bot's card (from the control
API, the inbox page, or many people at once with ``engage``), or Teams shows a card with a ``refresh``; the bot
gets Teams' invoke ``adaptiveCard/action`` and what it answers is what the person sees.

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from aiohttp import web

from emulator.bot_client import invoke_activity
from emulator.cards import read_card, skeleton
from emulator.client import EmulatorError
from emulator.process import RunningEmulator
from emulator.state import User

from .identity import APP_ID, TENANT
from .test_emulator import FakeBot, Teams, acquire_token

NOWHERE = "http://127.0.0.1:9/api/messages"
CARD = "application/vnd.microsoft.card.adaptive"
ACK = {"type": "Action.Execute", "id": "ack", "title": "Acknowledge", "verb": "acknowledge", "data": {"campaign": 7},
       "fallback": {"type": "Action.Submit", "title": "Acknowledge", "data": {"legacy": True}}}
POLL = {
    "type": "AdaptiveCard", "version": "1.4",
    "refresh": {"action": {"type": "Action.Execute", "verb": "poll-status", "data": {"poll": 3}}, "userIds": []},
    "body": [
        {"type": "TextBlock", "text": "Lunch on Friday?"},
        {"type": "Input.ChoiceSet", "id": "dish", "label": "Dish", "value": "soup",
         "choices": [{"title": "Soup", "value": "soup"}, {"title": "Salad", "value": "salad"}]},
        {"type": "Input.ChoiceSet", "id": "days", "isMultiSelect": True,
         "choices": [{"title": "Mon", "value": "mon"}, {"title": "Tue", "value": "tue"},
                     {"title": "Wed", "value": "wed"}]},
        {"type": "Container", "items": [{"type": "ColumnSet", "columns": [{"type": "Column", "items": [
            {"type": "ActionSet", "actions": [{"type": "Action.Execute", "title": "Vote", "verb": "vote",
                                               "data": {"poll": 3}}]}]}]}]},
    ],
    "actions": [
        ACK,
        {"type": "Action.ShowCard", "title": "More", "card": {"type": "AdaptiveCard", "body": [], "actions": [
            {"type": "Action.Execute", "verb": "remind", "data": "later"}]}},
        {"type": "Action.OpenUrl", "title": "Site", "url": "https://example.com"},
    ],
}


def thanks(text: str) -> dict[str, Any]:
    """A bot's card answer to an invoke."""
    return {"statusCode": 200, "type": CARD,
            "value": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": text}]}}


def card_message(card: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": CARD, "content": card}]}


class InvokeBot(FakeBot):
    """A messaging endpoint that answers invokes as a Universal Actions bot: ``answer(activity)`` gives the HTTP
    status and body (by default a card thanking for the verb and data)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        super().__init__(jwks)
        self.answer = lambda activity: (200, thanks("Thanks: {verb} {data}".format(**activity["value"]["action"])))
        # With ``together`` set, invokes wait until that many are in flight at once (or five seconds went by).
        self.together = 0
        self.in_flight = self.most_in_flight = 0
        self.all_in = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        response = await super().handle(request)
        activity = await request.json()
        if response.status != 200 or activity["type"] != "invoke":
            return response
        if self.together:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight >= self.together:
                self.all_in.set()
            try:
                await asyncio.wait_for(self.all_in.wait(), 5)
            except TimeoutError:
                pass
            finally:
                self.in_flight -= 1
        status, body = self.answer(activity)
        return web.json_response(body, status=status)

    def invokes(self) -> list[dict[str, Any]]:
        return [activity for _, activity, _ in self.received if activity["type"] == "invoke"]


@pytest.fixture(scope="module")
def bot_token(emu: RunningEmulator) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
        return acquire_token(emu)["access_token"]


@pytest.fixture
def teams(emu: RunningEmulator, bot_token: str) -> Teams:
    emu.client.reset()
    emu.client.config(limits=False, auto_install=True, keep_bodies=True, faults={}, seed=None, bot_endpoint=NOWHERE)
    return Teams(emu, bot_token)


@pytest.fixture
def bot(emu: RunningEmulator, teams: Teams) -> Any:
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    fake = InvokeBot(json.loads(pool.request("GET", f"{emu.url}/botframework/v1/.well-known/keys").data))
    emu.client.config(bot_endpoint=fake.start())
    yield fake
    fake.stop()
    assert fake.errors == []  # every activity carried a token the bot accepts


def person_with(teams: Teams, *activities: dict[str, Any]) -> tuple[str, str, list[str]]:
    """A new person, their conversation and the ids of the bot's ``activities`` sent to them."""
    aad = str(uuid.uuid4())
    conversation_id = teams.conversation(aad)
    ids = []
    for activity in activities:
        sent = teams.send(conversation_id, activity)
        assert sent.status == 201, sent
        ids.append(sent.body["id"])
    return aad, conversation_id, ids


# Reading cards and building the invoke (no process) ----------------------------------------------------------


def test_a_card_s_execute_actions_are_found_wherever_they_are_and_named_stably() -> None:
    found = read_card(POLL)

    # The body's ActionSet (inside a container's column), the card's actions, the ShowCard's card; not OpenUrl.
    assert found.names() == ["Vote", "ack", "#3"]
    assert [action["verb"] for _, action in found.executes] == ["vote", "acknowledge", "remind"]
    assert found.input_ids() == ["dish", "days"] and found.defaults() == {"dish": "soup"}
    assert found.refresh == POLL["refresh"]["action"]
    assert found.find("Acknowledge")[0] == "ack" and found.find("#3")[1]["verb"] == "remind"
    assert found.find(None)[0] == "Vote" and found.find("Site") is None

    twins = {"type": "AdaptiveCard", "body": [
        {"type": "Container", "selectAction": {"type": "Action.Execute", "title": "Open", "verb": "a"}, "items": [],
         "fallback": {"type": "ActionSet", "actions": [{"type": "Action.Execute", "title": "Old", "verb": "x"}]}}],
        "actions": [{"type": "Action.Execute", "title": "Open", "verb": "b"}]}
    assert read_card(twins).names() == ["Open", "#2"]  # a fallback is for old clients, not a button
    assert read_card({"type": "AdaptiveCard", "refresh": {"action": {"type": "Action.Submit"}}}).refresh is None
    assert read_card(skeleton(POLL)).names() == found.names()
    assert read_card(skeleton(POLL)).defaults() == {"dish": "soup"} and skeleton({"type": "AdaptiveCard"}) is None


def test_the_invoke_is_teams_adaptive_card_action_with_the_inputs_merged_into_the_data() -> None:
    person = User(0, str(uuid.uuid4()), "Ada", TENANT, True, False)

    pressed = invoke_activity(person, "a:1chat", "https://emulator/teams/", APP_ID, "1700000000000000001", ACK,
                              inputs={"dish": "salad", "campaign": 8})
    shown = invoke_activity(person, "a:1chat", "https://emulator/teams/", APP_ID, "1700000000000000001",
                            POLL["refresh"]["action"], trigger="automatic")
    remind = {"type": "Action.Execute", "verb": "remind", "data": "later"}
    untouched = invoke_activity(person, "a:1chat", "https://emulator/teams/", APP_ID, "1", remind)
    with_inputs = invoke_activity(person, "a:1chat", "https://emulator/teams/", APP_ID, "1", remind,
                                  inputs={"dish": "soup"})

    assert (pressed["type"], pressed["name"], pressed["replyToId"]) == ("invoke", "adaptiveCard/action",
                                                                        "1700000000000000001")
    assert pressed["value"] == {"action": {"type": "Action.Execute", "id": "ack", "verb": "acknowledge",
                                           "data": {"campaign": 8, "dish": "salad"}}, "trigger": "manual"}
    assert pressed["from"]["aadObjectId"] == person.aad_object_id and pressed["conversation"]["id"] == "a:1chat"
    assert pressed["recipient"]["id"] == f"28:{APP_ID}"
    assert shown["value"] == {"action": {"type": "Action.Execute", "verb": "poll-status", "data": {"poll": 3}},
                              "trigger": "automatic"}
    assert untouched["value"]["action"]["data"] == "later"
    assert with_inputs["value"]["action"]["data"] == {"dish": "soup"}  # data that is not an object gives way
    with pytest.raises(ValueError):
        invoke_activity(person, "a:1chat", "https://emulator/teams/", APP_ID, "1", ACK, trigger="sometimes")


# Through the control API ---------------------------------------------------------------------------------


def test_execute_sends_the_invoke_and_the_answered_card_is_what_the_person_sees(emu, teams, bot) -> None:
    aad, conversation_id, [activity_id] = person_with(teams, card_message(POLL))

    result = emu.client.execute(aad, action="Acknowledge")

    [invoke] = bot.invokes()
    assert invoke["name"] == "adaptiveCard/action" and invoke["replyToId"] == activity_id
    assert invoke["conversation"]["id"] == conversation_id and invoke["from"]["aadObjectId"] == aad
    # The card's inputs go with it as they are (the dish chosen from the start); the fallback Submit is not used.
    assert invoke["value"] == {"action": {"type": "Action.Execute", "id": "ack", "verb": "acknowledge",
                                          "data": {"campaign": 7, "dish": "soup"}}, "trigger": "manual"}
    answered = thanks("Thanks: acknowledge {'campaign': 7, 'dish': 'soup'}")["value"]
    assert (result["bot_status"], result["outcome"], result["card"]) == (200, "card", answered)
    assert result["answer"]["value"] == answered and result["activity_id"] == activity_id
    [message] = emu.client.messages(user=aad)
    assert message["card"] == answered and message["answered"] == 1
    assert message["activity"] == card_message(POLL)  # what the bot sent stays as it sent it
    stats = emu.client.stats()
    assert stats["invokes"] == {"sent": 1, "card": 1, "message": 0, "error": 0, "unreachable": 0}
    assert stats["invoke_ms"]["count"] == 1 and stats["invoke_ms"]["p50"] > 0
    assert stats["invoke_ms"]["p99"] == stats["invoke_ms"]["max"] == stats["invoke_ms"]["p50"]

    # The bot updates the message: everyone, the person too, sees its new version.
    edited = card_message({"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "Closed"}]})
    path = f"/v3/conversations/{quote(conversation_id, safe='')}/activities/{activity_id}"
    assert teams.call("PUT", path, edited).status == 200
    [message] = emu.client.messages(user=aad)
    assert message["card"] == edited["attachments"][0]["content"] and message["answered"] == 1


def test_inputs_given_are_merged_over_the_card_s_and_unknown_ones_refused(emu, teams, bot) -> None:
    aad, _, _ = person_with(teams, card_message(POLL))
    bot.answer = lambda activity: (200, {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                                         "value": "Counted"})  # the card stays

    emu.client.execute(aad, inputs={"dish": "salad", "days": "mon,wed"})  # the first action: Vote
    emu.client.execute(aad, action="#3", inputs={"days": "tue"})
    with pytest.raises(EmulatorError) as unknown:
        emu.client.execute(aad, action="Vote", inputs={"drink": "tea"})

    vote, remind = bot.invokes()
    assert vote["value"]["action"] == {"type": "Action.Execute", "verb": "vote",
                                       "data": {"poll": 3, "dish": "salad", "days": "mon,wed"}}
    assert remind["value"]["action"]["data"] == {"dish": "soup", "days": "tue"}
    assert unknown.value.status == 400 and "'drink'" in unknown.value.body["error"]
    assert "dish, days" in unknown.value.body["error"]


def test_an_answer_that_is_not_a_card_leaves_the_card_and_is_counted_by_outcome(emu, teams, bot) -> None:
    aad, _, _ = person_with(teams, card_message(POLL))
    error = {"statusCode": 500, "type": "application/vnd.microsoft.error",
             "value": {"code": "PollClosed", "message": "The poll is closed."}}

    bot.answer = lambda activity: (200, error)
    refused = emu.client.execute(aad, action="ack")
    bot.answer = lambda activity: (500, thanks("a card, but with HTTP 500"))
    failed = emu.client.execute(aad, action="ack")
    bot.answer = lambda activity: (200, {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                                         "value": "Noted"})
    text = emu.client.execute(aad, action="ack")
    emu.client.config(bot_endpoint=NOWHERE)
    away = emu.client.execute(aad, action="ack")

    assert [r["outcome"] for r in (refused, failed, text, away)] == ["error", "error", "message", "unreachable"]
    assert refused["answer"] == error and text["answer"]["value"] == "Noted" and isinstance(away["bot_status"], str)
    assert all(r["card"] == POLL for r in (refused, failed, text, away))
    [message] = emu.client.messages(user=aad)
    assert message["card"] == POLL and message["answered"] == 0
    stats = emu.client.stats()
    assert stats["invokes"] == {"sent": 4, "card": 0, "message": 1, "error": 2, "unreachable": 1}
    assert stats["invoke_ms"]["count"] == 3  # the unreachable bot gave no answer to time


def test_refresh_sends_the_card_s_refresh_action_with_the_trigger_automatic(emu, teams, bot) -> None:
    aad, _, [activity_id, _] = person_with(teams, card_message(POLL), {"type": "message", "text": "Later"})

    result = emu.client.refresh(aad, activity_id=activity_id)

    [invoke] = bot.invokes()
    assert invoke["replyToId"] == activity_id
    assert invoke["value"] == {"action": {"type": "Action.Execute", "verb": "poll-status", "data": {"poll": 3}},
                               "trigger": "automatic"}
    assert result["outcome"] == "card" and result["card"]["body"][0]["text"].startswith("Thanks: poll-status")
    with pytest.raises(EmulatorError) as again:  # the card the person sees now has no refresh
        emu.client.refresh(aad, activity_id=activity_id)
    assert again.value.status == 400 and "no refresh" in again.value.body["error"]
    with pytest.raises(EmulatorError) as text:  # the latest message, by default: text, no card
        emu.client.refresh(aad)
    assert text.value.status == 400 and "no Adaptive Card" in text.value.body["error"]
    assert len(bot.invokes()) == 1


def test_a_person_acts_only_on_the_bot_s_own_messages_to_them_and_actions_the_card_has(emu, teams, bot) -> None:
    aad, _, [mine] = person_with(teams, card_message(POLL))
    _, _, [theirs] = person_with(teams, card_message(POLL))
    silent = emu.client.register_users([str(uuid.uuid4())])[0]["aad_object_id"]

    def refused(who: str, **kwargs: Any) -> str:
        with pytest.raises(EmulatorError) as error:
            emu.client.execute(who, **kwargs)
        assert error.value.status == 400
        return error.value.body["error"]

    assert "not one of the bot's messages to this person" in refused(aad, activity_id=theirs)
    assert "not one of the bot's messages to this person" in refused(aad, activity_id="12345")
    assert "'Vote', 'ack', '#3'" in refused(aad, activity_id=mine, action="Site")
    assert "sent this user nothing" in refused(silent)
    assert "must be an object" in refused(aad, inputs=["dish"])
    emu.client.delete_chat(aad)
    assert "chat the person deleted" in refused(aad, activity_id=mine)
    assert bot.invokes() == []


# The inbox page -------------------------------------------------------------------------------------------


def test_the_inbox_offers_the_card_s_buttons_and_choices_and_sends_the_invoke(emu, teams, bot) -> None:
    aad, _, [activity_id] = person_with(teams, card_message(POLL))
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    inbox = f"{emu.url}/inbox/{aad}"

    page = pool.request("GET", inbox).data.decode()

    [form] = re.findall(r'<form method="post" action="/inbox/[^"]+/execute" class="execute">.*?</form>', page)
    assert f'<input type="hidden" name="activity_id" value="{activity_id}">' in form
    assert re.findall(r'<button type="submit" name="action" value="([^"]+)">([^<]+)</button>', form) == [
        ("Vote", "Vote"), ("ack", "Acknowledge"), ("#3", "#3")]
    assert '<input type="radio" name="input:dish" value="soup" checked> Soup' in form
    assert '<input type="radio" name="input:dish" value="salad"> Salad' in form
    assert '<input type="checkbox" name="input:days" value="tue"> Tue' in form
    assert f'action="/inbox/{aad}/refresh"' in page and "Refresh, as Teams does when it shows the card" in page

    fields = [("activity_id", activity_id), ("action", "Vote"), ("input:dish", "salad"), ("input:days", "mon"),
              ("input:days", "wed")]
    pressed = pool.request("POST", f"{inbox}/execute", fields=fields, encode_multipart=False, redirect=False)

    assert (pressed.status, pressed.headers["Location"]) == (303, f"/inbox/{aad}")
    [invoke] = bot.invokes()
    assert invoke["replyToId"] == activity_id
    assert invoke["value"]["action"]["data"] == {"poll": 3, "dish": "salad", "days": "mon,wed"}
    page = pool.request("GET", inbox).data.decode()
    assert "card updated by the bot's answer ×1" in page and "Thanks: vote" in page
    assert 'class="execute"' not in page  # the card the person sees now has no buttons

    # An error answer: the card stays, Teams' "Something went wrong" shows once.
    second = teams.send(emu.client.user(aad)["conversation_id"], card_message(POLL)).body["id"]
    bot.answer = lambda activity: (200, {"statusCode": 400, "type": "application/vnd.microsoft.error",
                                         "value": {"code": "Late", "message": "<b>Too late</b>"}})
    pressed = pool.request("POST", f"{inbox}/execute", fields={"activity_id": second, "action": "ack"},
                           encode_multipart=False, redirect=False)
    assert pressed.status == 303
    noted = pool.request("GET", inbox).data.decode()
    assert "Something went wrong" in noted and "&lt;b&gt;Too late&lt;/b&gt;" in noted and "<b>Too late" not in noted
    assert "Something went wrong" not in pool.request("GET", inbox).data.decode()
    assert emu.client.messages(user=aad)[1]["card"] == POLL


def test_the_inbox_escapes_button_titles_and_refuses_other_people_s_messages(emu, teams, bot) -> None:
    hostile = copy.deepcopy(POLL)
    hostile["actions"][0] = {**ACK, "id": '"><script>alert(1)</script>', "title": "<img src=x onerror=alert(1)>"}
    aad, _, [activity_id] = person_with(teams, card_message(hostile))
    _, _, [theirs] = person_with(teams, card_message(POLL))
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    inbox = f"{emu.url}/inbox/{aad}"

    page = pool.request("GET", inbox).data.decode()
    stolen = pool.request("POST", f"{inbox}/execute", fields={"activity_id": theirs, "action": "ack"},
                          encode_multipart=False, redirect=False)
    unknown = pool.request("POST", f"{inbox}/execute", fields={"activity_id": activity_id, "action": "Site"},
                           encode_multipart=False, redirect=False)
    no_refresh = pool.request("POST", f"{inbox}/refresh", fields={"activity_id": "12345"}, encode_multipart=False,
                              redirect=False)

    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;</button>" in page
    assert (stolen.status, unknown.status, no_refresh.status) == (400, 400, 400)
    assert b"not one of the bot's messages to this person" in stolen.data
    assert bot.invokes() == []


# Many people at once ---------------------------------------------------------------------------------------


def test_engage_reads_presses_and_reacts_for_each_person_and_applies_card_answers(emu, teams, bot) -> None:
    polled = [person_with(teams, card_message(POLL))[0] for _ in range(3)]
    texted, _, _ = person_with(teams, {"type": "message", "text": "No card"})
    emu.client.register_users([str(uuid.uuid4())])  # nothing from the bot: left out

    report = emu.client.engage("all", read=True, execute="ack", react="like", concurrency=2)

    assert report["users"] == 4
    assert report["sent"] == {"read": 4, "execute": 3, "react": 4} and report["execute_missing"] == 1
    assert report["bot_status"] == {"200": 11} and report["errors"] == 0
    assert report["invokes"] == {"card": 3, "message": 0, "error": 0, "unreachable": 0}
    assert report["invoke_ms"]["count"] == 3 and 0 < report["invoke_ms"]["p50"] <= report["invoke_ms"]["max"]
    for aad in polled:
        [message] = emu.client.messages(user=aad)
        assert message["answered"] == 1 and message["card"]["body"][0]["text"].startswith("Thanks: acknowledge")
        kinds = [(a["type"], a.get("name")) for _, a, _ in bot.received if a["from"]["aadObjectId"] == aad]
        assert kinds == [("event", "application/vnd.microsoft.readReceipt"), ("invoke", "adaptiveCard/action"),
                         ("messageReaction", None)]
    stats = emu.client.stats()
    assert stats["read_receipts"] == 4 and stats["invokes"]["card"] == 3

    only = emu.client.engage([texted], react="heart", concurrency=100_000)
    assert (only["users"], only["sent"], only["concurrency"]) == (1, {"read": 0, "execute": 0, "react": 1}, 500)
    assert only["invoke_ms"] == {"count": 0, "p50": None, "p99": None, "max": None}


def test_engage_acts_for_as_many_people_at_once_as_asked_and_no_more(emu, teams, bot) -> None:
    for _ in range(6):
        person_with(teams, card_message(POLL))
    bot.together = 3  # the bot holds each invoke until three are in flight

    report = emu.client.engage("all", execute="Vote", concurrency=3)

    assert report["sent"]["execute"] == 6 and report["invokes"]["card"] == 6
    assert bot.most_in_flight == 3


def test_engage_is_bounded_and_checks_who_it_names(emu, teams, bot) -> None:
    def refused(**body: Any) -> str:
        with pytest.raises(EmulatorError) as error:
            emu.client.request("POST", "/_emulator/engage", body)
        assert error.value.status == 400
        return error.value.body["error"]

    assert "at most 200000" in refused(users=[str(uuid.uuid4())] * 200_001)
    assert "not a known user" in refused(users=[str(uuid.uuid4())])
    assert '"all" or a list' in refused(read=True)
    assert "concurrency" in refused(users="all", concurrency="many")
    assert "unknown fields: speed" in refused(users="all", speed=2)
    assert bot.received == []


def test_without_bodies_engage_still_presses_each_person_s_latest_card(emu, teams, bot) -> None:
    emu.client.config(keep_bodies=False)
    older = copy.deepcopy(POLL)
    older["actions"][0] = {**ACK, "data": {"campaign": 6}}
    aad, _, [first, latest] = person_with(teams, card_message(older), card_message(POLL))

    report = emu.client.engage([aad], execute="ack")

    [invoke] = bot.invokes()
    assert report["sent"]["execute"] == 1 and invoke["replyToId"] == latest
    assert invoke["value"]["action"]["data"] == {"campaign": 7, "dish": "soup"}
    assert [(m["answered"], m["card"]) for m in emu.client.messages(user=aad)] == [(0, None), (1, None)]
    with pytest.raises(EmulatorError) as gone:
        emu.client.execute(aad, action="ack", activity_id=first)
    assert "keep_bodies is off" in gone.value.body["error"]
    with pytest.raises(EmulatorError) as answered:  # the card the person sees now has no buttons
        emu.client.execute(aad, action="ack")
    assert "has no Action.Execute" in answered.value.body["error"]
