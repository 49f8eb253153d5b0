"""Activities from the emulator to the bot's endpoint on a live server: install, stop, start."""

import json

import pytest

from bots.models import TeamsAddress
from campaigns.models import Campaign, OptOut
from delivery import services
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bot(teams, live_server, redis_client):
    teams.client.config(bot_endpoint=f"{live_server.url}/api/messages")
    return teams


def queued_replies(redis_client) -> list[str]:
    replies = []
    for raw in redis_client.lrange("default", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "bots.tasks.send_reply":
            import base64

            args = json.loads(base64.b64decode(message["body"]))[0]
            replies.append(args[2])
    return replies


def test_installing_stores_the_teams_address_and_welcomes_a_known_person(bot):
    person = factories.recipient()
    welcome = factories.campaign(kind=Campaign.Kind.WELCOME)
    services.campaign_launch(campaign_id=welcome.pk)

    answer = bot.client.install(str(person.aad_object_id))

    assert answer["bot_status"] == [200, 200]
    address = TeamsAddress.objects.get(aad_object_id=person.aad_object_id)
    assert address.state == TeamsAddress.State.INSTALLED
    assert address.conversation_id == answer["conversation_id"]
    assert address.user_id == answer["user_id"] and address.service_url.startswith(bot.url)
    assert list(welcome.deliveries.values_list("recipient_id", flat=True)) == [person.pk]


def test_installing_again_lifts_the_opt_out_recorded_when_the_bot_was_blocked(bot):
    person = factories.recipient()
    OptOut.objects.create(recipient=person, source=OptOut.Source.BLOCKED)
    bot.client.install(str(person.aad_object_id))
    assert not OptOut.objects.filter(recipient=person).exists()


def test_typing_stop_records_an_opt_out_and_queues_a_confirmation(bot, redis_client):
    person = factories.recipient()
    bot.client.install(str(person.aad_object_id))

    answer = bot.client.say(str(person.aad_object_id), text="  STOP ")

    assert answer["bot_status"] == 200
    assert OptOut.objects.get(recipient=person, category=None).source == OptOut.Source.TYPED_STOP
    assert any("no longer receive" in reply for reply in queued_replies(redis_client))


def test_typing_start_opts_back_in(bot, redis_client):
    person = factories.recipient()
    bot.client.install(str(person.aad_object_id))
    bot.client.say(str(person.aad_object_id), text="stop")

    bot.client.say(str(person.aad_object_id), text="start")

    assert not OptOut.objects.filter(recipient=person).exists()
    assert any("Welcome back" in reply for reply in queued_replies(redis_client))


def test_the_card_button_opts_out_of_its_category_only(bot):
    person = factories.recipient()
    news = factories.category(slug="news")
    bot.client.install(str(person.aad_object_id))

    bot.client.say(str(person.aad_object_id), value={"crier_action": "opt_out", "category": "news"})

    assert OptOut.objects.get(recipient=person).category == news
    assert OptOut.objects.get(recipient=person).source == OptOut.Source.CARD_BUTTON


def test_anything_else_gets_help(bot, redis_client):
    person = factories.recipient()
    bot.client.install(str(person.aad_object_id))
    bot.client.say(str(person.aad_object_id), text="what is this?")
    assert not OptOut.objects.exists()
    assert any("Type **stop**" in reply for reply in queued_replies(redis_client))


def test_uninstalling_marks_the_address(bot):
    person = factories.recipient()
    bot.client.install(str(person.aad_object_id))
    bot.client.uninstall(str(person.aad_object_id))
    assert TeamsAddress.objects.get(aad_object_id=person.aad_object_id).state == TeamsAddress.State.UNINSTALLED


def test_an_activity_without_a_valid_token_is_refused(bot, client):
    activity = {"type": "message", "channelId": "msteams", "serviceUrl": bot.service_url, "text": "stop"}
    assert client.post("/api/messages", activity, content_type="application/json").status_code == 401
    forged = client.post(
        "/api/messages", activity, content_type="application/json", HTTP_AUTHORIZATION="Bearer a.b.c"
    )
    assert forged.status_code == 401


def test_deeply_nested_json_is_a_clean_400_and_nothing_is_processed(client, redis_client):
    nested = "[" * 5000 + "]" * 5000  # about 10 KB, deeper than Python's recursion limit
    body = '{"type": "conversationUpdate", "channelId": "msteams", "channelData": ' + nested + "}"

    response = client.post("/api/messages", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert not TeamsAddress.objects.exists() and redis_client.llen("default") == 0


def test_an_oversized_body_is_a_json_413_and_nothing_is_processed(client, settings, redis_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"type": "message", "channelId": "msteams", "text": "x" * 2000})

    response = client.post("/api/messages", body, content_type="application/json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert set(response.json()["error"]) == {"code", "message", "fields"}
    assert response.json()["error"]["code"] == "too_large"
    assert not TeamsAddress.objects.exists() and redis_client.llen("default") == 0


def test_a_body_that_is_not_json_is_a_400(client):
    assert client.post("/api/messages", "nope", content_type="application/json").status_code == 400


def test_a_reply_is_paced_in_the_tenant_the_person_wrote_from(bot, redis_client):
    person = factories.recipient()
    other_tenant = "22222222-2222-2222-2222-222222222222"
    bot.client.register_users([{"aad_object_id": str(person.aad_object_id), "tenant_id": other_tenant}])
    bot.client.install(str(person.aad_object_id))

    bot.client.say(str(person.aad_object_id), text="hello")

    import base64

    queued = [json.loads(raw) for raw in redis_client.lrange("default", 0, -1)]
    [args] = [json.loads(base64.b64decode(m["body"]))[0] for m in queued if m["headers"]["task"] == "bots.tasks.send_reply"]
    assert args[3] == other_tenant


@pytest.mark.parametrize("activity, field", [
    ({"type": "event", "timestamp": "not a time"}, "timestamp"),
    ({"type": "message", "from": "29:not-an-account"}, "from"),
    ({"type": "messageReaction", "reactionsAdded": "like"}, "reactionsAdded"),
    ({"type": "invoke", "name": "adaptiveCard/action", "conversation": ["a:1"]}, "conversation"),
], ids=["timestamp", "from", "reactions", "conversation"])
def test_an_activity_whose_fields_have_the_wrong_shape_is_a_400_naming_it_and_nothing_is_processed(
        client, key, activity, field, redis_client):
    from tests.bots.test_inbound_auth import SERVICE_URL, token

    body = {**activity, "channelId": "msteams", "serviceUrl": SERVICE_URL}

    response = client.post("/api/messages", data=json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=token(key))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_activity"
    assert list(response.json()["error"]["fields"]) == [field]
    assert TeamsAddress.objects.count() == 0 and queued_replies(redis_client) == []
