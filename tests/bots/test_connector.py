"""The Bot Connector client against the emulator."""

import time
import uuid

from django.conf import settings

from bots import http
from bots.connector import SENT_AT_HEADER, BotConnectorClient


def test_each_call_says_when_it_was_made_so_a_retry_after_is_judged_by_that_moment(teams, monkeypatch):
    sent: list[dict[str, str]] = []
    real = http.request

    def spy(method, url, **arguments):
        sent.append(dict(arguments["headers"]))
        return real(method, url, **arguments)

    monkeypatch.setattr("bots.connector.http.request", spy)
    before = time.time()

    BotConnectorClient().create_conversation(
        service_url=teams.service_url, tenant_id=settings.BOT_TENANT_ID, member_id=str(uuid.uuid4())
    )

    [headers] = sent
    assert before <= float(headers[SENT_AT_HEADER]) <= time.time()
