"""The bot's replies (the "stop" confirmation and the others): paced like every call to Teams, and
retried by the same table as sends."""

import json
import time
import uuid
from base64 import b64decode

import pytest
from django.conf import settings

from bots.connector import connector
from bots.pacing import pacer
from bots.tasks import send_reply
from tests.bots.test_pacing import pause_left


@pytest.fixture
def chat(teams):
    """A person with the bot installed and their one-to-one conversation."""
    aad = str(uuid.uuid4())
    teams.client.register_users([aad])
    conversation_id = connector.create_conversation(
        service_url=teams.service_url, tenant_id=settings.BOT_TENANT_ID, member_id=aad
    )
    return aad, conversation_id


def queued_replies(redis_client) -> list[dict]:
    """The replies waiting in the broker: their arguments and when they may run."""
    queued = []
    for raw in redis_client.lrange("default", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "bots.tasks.send_reply":
            args, kwargs, _ = json.loads(b64decode(message["body"]))
            queued.append({"args": args, "kwargs": kwargs, "eta": message["headers"].get("eta")})
    return queued


TEXT = "You will no longer receive announcements."


def reply(teams, conversation_id: str, **kwargs) -> None:
    send_reply.apply(args=[teams.service_url, conversation_id, TEXT], kwargs=kwargs)


def requests_made(teams) -> int:
    return teams.client.stats()["requests"]


def seconds_until(eta: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(eta).timestamp() - time.time()


def test_a_reply_reaches_the_person(teams, chat, redis_client):
    aad, conversation_id = chat
    reply(teams, conversation_id)
    assert [m["activity"]["text"] for m in teams.client.user(aad)["messages"]] == [TEXT]
    assert queued_replies(redis_client) == []


def test_a_reply_answered_403_is_not_retried(teams, chat, redis_client):
    aad, conversation_id = chat
    teams.client.block(aad)
    before = requests_made(teams)

    reply(teams, conversation_id)

    assert requests_made(teams) - before == 1
    assert queued_replies(redis_client) == []


def test_a_reply_answered_404_is_not_retried(teams, chat, redis_client):
    aad, conversation_id = chat
    teams.client.delete_chat(aad)
    before = requests_made(teams)

    reply(teams, conversation_id)

    assert requests_made(teams) - before == 1
    assert queued_replies(redis_client) == []


def test_a_throttled_reply_is_tried_again_after_retry_after_and_tells_every_worker(teams, chat, redis_client):
    _, conversation_id = chat
    teams.client.config(faults={"status_429": 1.0, "retry_after_seconds": 3})
    before = requests_made(teams)

    reply(teams, conversation_id)

    assert requests_made(teams) - before == 1  # not tried again at once
    [again] = queued_replies(redis_client)
    assert again["args"][:2] == [teams.service_url, conversation_id] and again["kwargs"]["attempt"] == 2
    assert 2.5 <= seconds_until(again["eta"]) <= 4.5  # never sooner than Retry-After
    assert pause_left(pacer, settings.BOT_TENANT_ID) > 2  # every worker's next slot is past it


def test_a_reply_that_failed_transiently_is_not_tried_past_the_last_attempt(teams, chat, redis_client, settings):
    _, conversation_id = chat
    settings.DELIVERY_MAX_ATTEMPTS = 3
    teams.client.config(faults={"status_503": 1.0})

    reply(teams, conversation_id)
    [again] = queued_replies(redis_client)
    assert again["kwargs"]["attempt"] == 2
    redis_client.delete("default")

    reply(teams, conversation_id, attempt=3)
    assert queued_replies(redis_client) == []


def test_a_reply_takes_a_pacer_slot_and_counts_in_its_conversation(teams, chat, redis_client):
    _, conversation_id = chat

    reply(teams, conversation_id)

    assert redis_client.hget(pacer.tenant_key(settings.BOT_TENANT_ID), "tat") is not None
    assert redis_client.zcard(pacer.calls_key(settings.BOT_TENANT_ID)) == 1
    assert redis_client.zcard(f"crier:thread:{settings.BOT_APP_ID}:conversation:{conversation_id}") == 1


def test_a_reply_to_a_conversation_at_its_limit_waits_without_using_an_attempt(teams, chat, redis_client):
    _, conversation_id = chat
    now = time.time()
    thread = f"crier:thread:{settings.BOT_APP_ID}:conversation:{conversation_id}"
    redis_client.zadd(thread, {f"past:{i}": now - 0.01 * i for i in range(7)})  # 7 calls this second
    before = requests_made(teams)

    reply(teams, conversation_id)

    assert requests_made(teams) == before
    [again] = queued_replies(redis_client)
    assert again["kwargs"]["attempt"] == 1 and seconds_until(again["eta"]) <= 1.5
