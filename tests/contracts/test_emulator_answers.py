"""The emulator's side of the contract: it gives each documented Teams answer (through its control API or
its real behaviour, e.g. a person who blocked the bot), and what it sends must match the same fixture
the connector is tested against (tests/contracts/teams_answers.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import pytest
from django.conf import settings

from core import http
from emulator.process import RunningEmulator
from bots.tokens import token_provider

from .teams_answers import ANSWERS, TeamsAnswer, conformance_problems

# Not an answer at all, and nothing an emulator that is up can give: checked on Crier's side only.
NOT_EMULATED = {"connection refused"}
CLIENT_TIMEOUT = 0.3


class Bot:
    """Calls the emulator as Crier does: through core.http, with a token from the emulated authority."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.emulator = emulator
        self.base = emulator.service_url.rstrip("/")
        self.token = token_provider.get()

    def call(self, path: str, body: dict, timeout: float = 10.0) -> http.HttpResponse:
        return http.request(
            "POST", f"{self.base}{path}", body=json.dumps(body).encode(), timeout=timeout,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json; charset=utf-8"},
        )

    def create(self, aad: str) -> http.HttpResponse:
        return self.call("/v3/conversations", {
            "bot": {"id": f"28:{settings.BOT_APP_ID}"}, "members": [{"id": aad}], "isGroup": False,
            "tenantId": settings.BOT_TENANT_ID, "channelData": {"tenant": {"id": settings.BOT_TENANT_ID}},
        })

    def send(self, conversation_id: str, timeout: float = 10.0) -> http.HttpResponse:
        return self.call(f"/v3/conversations/{quote(conversation_id, safe='')}/activities",
                         {"type": "message", "text": "Hello"}, timeout=timeout)

    def person_with_a_chat(self) -> tuple[str, str]:
        aad = str(uuid.uuid4())
        self.emulator.client.register_users([{"aad_object_id": aad, "name": "Someone"}])
        created = self.create(aad)
        assert created.status == 201, created
        return aad, created.json()["id"]


def _with_faults(**faults: float) -> Callable[[Bot], http.HttpResponse]:
    def produce(bot: Bot) -> http.HttpResponse:
        _, conversation = bot.person_with_a_chat()
        bot.emulator.client.config(faults=faults)
        return bot.send(conversation)

    return produce


def _blocked(bot: Bot) -> http.HttpResponse:
    aad, conversation = bot.person_with_a_chat()
    bot.emulator.client.block(aad)
    return bot.send(conversation)


def _uninstalled(bot: Bot) -> http.HttpResponse:
    aad, conversation = bot.person_with_a_chat()
    bot.emulator.client.uninstall(aad)
    return bot.send(conversation)


def _disabled_by_admin(bot: Bot) -> http.HttpResponse:
    _, conversation = bot.person_with_a_chat()
    bot.emulator.client.config(bot_disabled=True)
    return bot.send(conversation)


def _not_installed(bot: Bot) -> http.HttpResponse:
    bot.emulator.client.config(auto_install=False)
    return bot.create(str(uuid.uuid4()))


def _chat_deleted(bot: Bot) -> http.HttpResponse:
    aad, conversation = bot.person_with_a_chat()
    bot.emulator.client.delete_chat(aad)
    return bot.send(conversation)


def _no_answer(bot: Bot) -> http.HttpResponse:
    _, conversation = bot.person_with_a_chat()
    bot.emulator.client.config(faults={"timeout": 1.0, "timeout_seconds": 1.0})
    return bot.send(conversation, timeout=CLIENT_TIMEOUT)


PRODUCE: dict[str, Callable[[Bot], http.HttpResponse]] = {
    "403 blocked by the user": _blocked,
    "403 errorCode 209 MessageWritesBlocked": _uninstalled,
    "403 bot disabled by the tenant admin": _disabled_by_admin,
    "403 app not installed for the user": _not_installed,
    "404 conversation not found": _chat_deleted,
    "412 precondition failed": _with_faults(status_412=1.0),
    "429 Retry-After in seconds": _with_faults(status_429=1.0, retry_after_seconds=7),
    "429 Retry-After as an HTTP-date": _with_faults(status_429=1.0, retry_after_seconds=30, retry_after_http_date=True),
    "502 service error": _with_faults(status_502=1.0),
    "503 service unavailable": _with_faults(status_503=1.0),
    "504 gateway timeout": _with_faults(status_504=1.0),
    "no answer in time": _no_answer,
}


def test_every_documented_answer_is_either_emulated_or_named_as_not():
    assert set(PRODUCE) | NOT_EMULATED == {answer.name for answer in ANSWERS}
    assert not set(PRODUCE) & NOT_EMULATED


@pytest.fixture
def bot(teams):
    yield Bot(teams)
    teams.client.config(bot_disabled=False, auto_install=True, faults={})


@pytest.mark.parametrize("answer", [a for a in ANSWERS if a.name not in NOT_EMULATED], ids=str)
def test_the_emulator_gives_each_documented_answer_as_microsoft_shows_it(bot, answer: TeamsAnswer):
    if answer.status is None:
        with pytest.raises(http.HttpTimeout):
            PRODUCE[answer.name](bot)
        return
    response = PRODUCE[answer.name](bot)

    assert conformance_problems(answer, response.status, response.headers, response.body, time.time()) == []
