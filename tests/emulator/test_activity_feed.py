"""The emulator's Microsoft Graph activity feed, as a real process over real HTTPS: one notification to up to 100
people a call, for those who have the app; its permission, its token's remaining life, its body's checks and its
limit of 2 calls a second."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
import urllib3

from emulator.process import RunningEmulator
from emulator.tokens import SigningKey

from .identity import APP_ID, TENANT
from .test_graph import token

PATH = "/teamwork/sendActivityNotificationToRecipients"


@pytest.fixture(autouse=True)
def fresh(emu: RunningEmulator) -> None:
    emu.client.reset()
    emu.client.config(limits=False, faults={}, seed=None, bot_endpoint="http://127.0.0.1:9/api/messages")


def send(emu: RunningEmulator, body: Any, bearer: str | None = None) -> tuple[int, Any, dict[str, str]]:
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=emu.ca_file, retries=False)
    response = pool.request("POST", emu.graph_url + PATH, body=json.dumps(body).encode(), headers={
        "Authorization": f"Bearer {bearer or token(emu)['access_token']}", "Content-Type": "application/json"})
    return response.status, json.loads(response.data) if response.data else None, dict(response.headers)


def urgent(*people: str, **changes: Any) -> dict[str, Any]:
    return {
        "topic": {"source": "text", "value": "Office closed today", "webUrl": "https://crier.example/c/1"},
        "activityType": "urgentAnnouncement",
        "previewText": {"content": "The Leeds office is closed today: work from home."},
        "recipients": [{"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": p} for p in people],
        **changes,
    }


def people(emu: RunningEmulator, count: int, *, installed: bool = True) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    emu.client.register_users([{"aad_object_id": aad, "installed": installed} for aad in ids])
    return ids


def test_a_notification_reaches_everyone_named_who_has_the_app_and_nobody_else(emu):
    have, lack = people(emu, 3), people(emu, 2, installed=False)

    status, body, _ = send(emu, urgent(*have, *lack, previewText={"content": "x" * 200}))

    assert (status, body) == (202, None)
    [shown] = emu.client.graph_activity(have[0])
    assert (shown["activityType"], shown["topic"]["value"], shown["previewText"]) == (
        "urgentAnnouncement", "Office closed today", "x" * 150)
    assert all(len(emu.client.graph_activity(aad)) == 1 for aad in have)
    assert all(emu.client.graph_activity(aad) == [] for aad in lack)
    stats = emu.client.graph_stats()
    assert (stats["activity_calls"], stats["activity_delivered"], stats["activity_without_app"]) == (1, 3, 2)


def test_the_system_default_type_needs_its_text_and_any_other_type_must_be_declared(emu):
    [aad] = people(emu, 1)
    plain = urgent(aad, activityType="systemDefault")

    assert send(emu, plain)[0] == 400
    assert send(emu, {**plain, "templateParameters": [{"name": "systemDefaultText", "value": "Closed"}]})[0] == 202
    status, body, _ = send(emu, urgent(aad, activityType="somethingElse"))
    assert (status, body["error"]["code"]) == (400, "BadRequest") and "not declared" in body["error"]["message"]


@pytest.mark.parametrize("change", [
    {"topic": {"source": "text", "value": "No link"}},
    {"topic": {"source": "text", "value": "Plain link", "webUrl": "http://crier.example/"}},
    {"topic": {"source": "elsewhere", "value": "x"}},
    {"previewText": {"content": ""}},
    {"recipients": []},
    {"recipients": [{"userId": "not-a-guid", "@odata.type": "microsoft.graph.aadUserNotificationRecipient"}]},
    {"recipients": [{"userId": str(uuid.uuid4()), "@odata.type": "microsoft.graph.somethingElse"}]},
    {"templateParameters": "name=value"},
])
def test_a_body_graph_cannot_read_is_a_bad_request_and_reaches_nobody(emu, change):
    [aad] = people(emu, 1)

    status, body, _ = send(emu, {**urgent(aad), **change})

    assert (status, body["error"]["code"]) == (400, "BadRequest")
    assert emu.client.graph_activity(aad) == []


def test_more_than_a_hundred_recipients_in_one_call_are_refused(emu):
    many = people(emu, 101)

    assert send(emu, urgent(*many))[0] == 400
    assert send(emu, urgent(*many[:100]))[0] == 202


def test_it_needs_the_teams_activity_permission(emu):
    [aad] = people(emu, 1)
    emu.client.graph_config(permissions=["User.Read.All"])

    status, body, _ = send(emu, urgent(aad))

    assert (status, body["error"]["code"]) == (403, "Authorization_RequestDenied")


def test_a_token_within_45_minutes_of_its_expiry_is_refused(emu):
    [aad] = people(emu, 1)
    key = SigningKey.load_or_create(emu.state_dir)
    now = int(time.time())
    claims = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{TENANT}/", "iat": now,
              "nbf": now, "exp": now + 30 * 60, "appid": APP_ID, "tid": TENANT, "roles": ["TeamsActivity.Send"]}
    short = key.sign(claims)
    assert jwt.decode(short, options={"verify_signature": False})["exp"] - now == 1800

    status, body, _ = send(emu, urgent(aad), bearer=short)

    assert (status, body["error"]["code"]) == (412, "PreconditionFailed")
    assert emu.client.graph_activity(aad) == []


def test_beyond_two_calls_a_second_graph_answers_429_when_the_limits_are_on(emu):
    [aad] = people(emu, 1)
    emu.client.config(limits=True)
    bearer = token(emu)["access_token"]

    answers = [send(emu, urgent(aad), bearer=bearer) for _ in range(4)]

    assert [status for status, _, _ in answers[:2]] == [202, 202]
    refused = [headers for status, _, headers in answers if status == 429]
    assert refused and all(int(headers["Retry-After"]) >= 1 for headers in refused)
    assert emu.client.graph_stats()["activity_throttled"] == len(refused)
    assert len(emu.client.graph_activity(aad)) == 4 - len(refused)
