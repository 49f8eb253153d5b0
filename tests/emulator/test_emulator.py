"""The Teams emulator, tested as a real process over real HTTPS (no database, no Django).

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import msal
import pytest
import urllib3
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.client import EmulatorError
from emulator.process import RunningEmulator, start_emulator
from tests.contracts.teams_answers import BY_NAME, conformance_problems

from .identity import APP_ID, PASSWORD, TENANT

OTHER_TENANT = "99999999-9999-9999-9999-999999999999"
SCOPE = "https://api.botframework.com/.default"
REPO_ROOT = Path(__file__).resolve().parents[2]


def acquire_token(emu: RunningEmulator, secret: str = PASSWORD, tenant: str = TENANT) -> dict[str, Any]:
    """A real msal client-credentials call (msal uses requests, which trusts REQUESTS_CA_BUNDLE)."""
    app = msal.ConfidentialClientApplication(
        APP_ID, client_credential=secret, authority=f"{emu.url}/{tenant}", instance_discovery=False
    )
    return app.acquire_token_for_client(scopes=[SCOPE])


@pytest.fixture(scope="module")
def token(emu: RunningEmulator) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
        result = acquire_token(emu)
    return result["access_token"]


@dataclass
class Answer:
    status: int
    headers: Any
    body: Any


class Teams:
    """The bot's side of the Bot Connector, spoken with urllib3 over keep-alive HTTPS."""

    def __init__(self, emu: RunningEmulator, token: str, region: str = "teams") -> None:
        self.pool = urllib3.PoolManager(ca_certs=emu.ca_file, retries=False)
        self.base = f"{emu.url}/{region}"
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {**self.auth, "Content-Type": "application/json", **(headers or {})}
        response = self.pool.request(method, self.base + path, body=data, headers=all_headers)
        try:
            decoded = json.loads(response.data) if response.data else None
        except ValueError:
            decoded = response.data
        return Answer(response.status, response.headers, decoded)

    def create(self, member_id: str, tenant: str | None = TENANT, **member_extra: Any) -> Answer:
        body: dict[str, Any] = {
            "bot": {"id": f"28:{APP_ID}", "name": "Crier"},
            "members": [{"id": member_id, **member_extra}],
            "isGroup": False,
        }
        if tenant is not None:
            body["tenantId"] = tenant
            body["channelData"] = {"tenant": {"id": tenant}}
        return self.call("POST", "/v3/conversations", body)

    def send(self, conversation_id: str, activity: dict[str, Any] | None = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Answer:
        activity = activity if activity is not None else {"type": "message", "text": "Hello"}
        return self.call("POST", f"/v3/conversations/{quote(conversation_id, safe='')}/activities", activity,
                         raw=raw, headers=headers)

    def conversation(self, aad: str) -> str:
        answer = self.create(aad)
        assert answer.status == 201, answer
        return answer.body["id"]


@pytest.fixture
def teams(emu: RunningEmulator, token: str) -> Teams:
    emu.client.reset()
    emu.client.config(limits=False, auto_install=True, keep_bodies=True, faults={}, seed=None,
                      bot_endpoint="http://127.0.0.1:9/api/messages")
    return Teams(emu, token)


def documented(name: str, answer: Answer) -> list[str]:
    """How ``answer`` differs from Microsoft's documented answer ``name`` (tests/contracts/teams_answers.py)."""
    return conformance_problems(BY_NAME[name], answer.status, dict(answer.headers), json.dumps(answer.body).encode(),
                                time.time())


def new_user(emu: RunningEmulator, **fields: Any) -> dict[str, Any]:
    return emu.client.register_users([{"aad_object_id": str(uuid.uuid4()), **fields}])[0]


# Entra token endpoint ----------------------------------------------------------------------------


def test_msal_gets_a_token_and_bad_credentials_are_refused(emu: RunningEmulator, teams: Teams, monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
    result = acquire_token(emu, tenant="botframework.com")
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://api.botframework.com"
    assert claims["appid"] == APP_ID and claims["azp"] == APP_ID
    assert claims["iss"].startswith("https://sts.windows.net/") and claims["exp"] > time.time() + 3000

    wrong = acquire_token(emu, secret="not-the-secret")
    assert wrong["error"] == "invalid_client"
    assert wrong["error_description"].startswith("AADSTS7000215")
    unknown_tenant = acquire_token(emu, tenant=OTHER_TENANT)
    assert unknown_tenant["error"] == "invalid_request"
    assert emu.client.stats()["tokens_issued"] == 1

    # The token msal got works on the connector.
    user = new_user(emu)
    assert Teams(emu, result["access_token"]).create(user["aad_object_id"]).status == 201


def test_connector_requires_an_emulator_token(emu: RunningEmulator, teams: Teams) -> None:
    user = new_user(emu)
    cid = teams.conversation(user["aad_object_id"])
    teams.auth = {}
    missing = teams.send(cid)
    assert missing.status == 401
    assert missing.body == {"message": "Authorization has been denied for this request."}
    assert missing.headers.get("X-Correlating-OperationId")
    teams.auth = {"Authorization": "Bearer not-a-jwt"}
    assert teams.send(cid).status == 401
    # Right claims, wrong signing key.
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"aud": "https://api.botframework.com", "appid": APP_ID, "exp": int(time.time()) + 600},
        forger, algorithm="RS256",
    )
    teams.auth = {"Authorization": f"Bearer {forged}"}
    assert teams.send(cid).status == 401
    assert emu.client.stats()["messages"] == 0


# Conversations and sends -------------------------------------------------------------------------


def test_create_conversation_is_stable_and_send_records_the_message(emu: RunningEmulator, teams: Teams) -> None:
    user = new_user(emu, name="Ada")
    first = teams.create(user["aad_object_id"])
    assert first.status == 201 and first.body["id"].startswith("a:")
    assert first.headers.get("X-Correlating-OperationId")
    assert teams.create(user["aad_object_id"].upper()).body == first.body
    assert teams.create(user["user_id"]).body == first.body  # by 29: id too

    # Any region prefix is a service URL; the conversation id is URL-encoded in the path.
    emea = Teams(emu, teams.auth["Authorization"][7:], region="emea")
    activity = {"type": "message", "text": "Hello **Ada**", "textFormat": "markdown"}
    sent = emea.send(first.body["id"], activity)
    assert sent.status == 201 and sent.body["id"]

    [message] = emu.client.messages(user=user["aad_object_id"])
    assert message["activity_id"] == sent.body["id"]
    assert message["conversation_id"] == first.body["id"]
    assert message["user_id"] == user["user_id"] and message["activity"] == activity
    assert message["updated"] == 0 and message["deleted"] is False
    assert emu.client.messages(since=time.time() + 60) == []
    assert len(emu.client.messages(since=message["received_at"])) == 1
    stats = emu.client.stats()
    assert stats["messages"] == 1 and stats["conversations_created"] == 1 and stats["users"] == 1
    assert stats["requests"] == 4 and stats["max_messages_per_user"] == 1


def test_unknown_users_follow_auto_install(emu: RunningEmulator, teams: Teams) -> None:
    stranger = str(uuid.uuid4())
    assert teams.create(stranger).status == 201  # auto-install on: made on the fly
    assert emu.client.user(stranger)["tenant_id"] == TENANT

    emu.client.config(auto_install=False)
    refused = teams.create(str(uuid.uuid4()))
    assert refused.status == 403
    assert refused.body["error"]["code"] == "ForbiddenOperationException"
    not_installed = new_user(emu, installed=False)
    assert teams.create(not_installed["aad_object_id"]).status == 403


def test_create_conversation_rejects_bad_requests(emu: RunningEmulator, teams: Teams) -> None:
    user = new_user(emu)
    aad = user["aad_object_id"]
    with_aad_field = teams.create("29:someone", aadObjectId=aad)
    assert with_aad_field.status == 400 and with_aad_field.body["error"]["code"] == "BadArgument"
    no_tenant = teams.create(aad, tenant=None)
    assert no_tenant.status == 400 and no_tenant.body["error"]["message"] == "Tenant id is required"
    assert teams.create(aad, tenant=OTHER_TENANT).status == 400
    assert teams.create("someone@example.com").status == 400
    two = teams.call("POST", "/v3/conversations", {"members": [{"id": aad}, {"id": aad}], "tenantId": TENANT})
    assert two.status == 400
    assert emu.client.stats()["conversations_created"] == 0


def test_blocked_and_uninstalled_users_refuse_messages(emu: RunningEmulator, teams: Teams) -> None:
    user = new_user(emu)
    aad = user["aad_object_id"]
    cid = teams.conversation(aad)

    emu.client.block(aad)
    blocked = teams.send(cid)
    assert documented("403 blocked by the user", blocked) == []
    emu.client.unblock(aad)
    assert teams.send(cid).status == 201

    answer = emu.client.uninstall(aad)
    assert isinstance(answer["bot_status"][0], str)  # nothing listens on the bot endpoint
    gone = teams.send(cid)
    assert documented("403 errorCode 209 MessageWritesBlocked", gone) == []
    assert teams.create(aad).status == 403
    assert emu.client.stats()["messages"] == 1


def test_deleted_chat_makes_the_old_id_fail_and_a_new_one(emu: RunningEmulator, teams: Teams) -> None:
    aad = new_user(emu)["aad_object_id"]
    old = teams.conversation(aad)
    assert teams.send(old).status == 201
    emu.client.delete_chat(aad)
    stale = teams.send(old)
    assert stale.status == 404
    assert stale.body == {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
    new = teams.conversation(aad)
    assert new != old and teams.send(new).status == 201
    assert [m["conversation_id"] for m in emu.client.messages(user=aad)] == [old, new]


def test_oversized_and_malformed_activities_are_refused(emu: RunningEmulator, teams: Teams) -> None:
    cid = teams.conversation(new_user(emu)["aad_object_id"])
    big = teams.send(cid, {"type": "message", "text": "x" * 120_000})
    assert big.status == 413 and big.body["error"]["code"] == "MessageSizeTooBig"
    for bad in (
        teams.send(cid, raw=b"{not json"),
        teams.send(cid, {"type": "typing"}),
        teams.send(cid, {"type": "message"}),
    ):
        assert bad.status == 400 and bad.body["error"]["code"] == "BadArgument"
    assert emu.client.stats()["messages"] == 0


def test_update_and_delete_a_sent_message(emu: RunningEmulator, teams: Teams) -> None:
    aad = new_user(emu)["aad_object_id"]
    cid = teams.conversation(aad)
    activity_id = teams.send(cid).body["id"]
    path = f"/v3/conversations/{quote(cid, safe='')}/activities/{activity_id}"
    updated = teams.call("PUT", path, {"type": "message", "text": "Edited"})
    assert updated.status == 200 and updated.body == {"id": activity_id}
    assert teams.call("DELETE", path).status == 200
    [message] = emu.client.messages(user=aad)
    assert message["activity"]["text"] == "Edited" and message["updated"] == 1 and message["deleted"] is True
    unknown = f"/v3/conversations/{quote(cid, safe='')}/activities/12345"
    missing = teams.call("PUT", unknown, {"type": "message", "text": "x"})
    assert missing.status == 404 and missing.body["error"]["code"] == "NotFound"
    assert teams.call("DELETE", unknown).status == 404
    reply = teams.call("POST", path, {"type": "message", "text": "A reply"})  # ReplyToActivity
    assert reply.status == 201 and len(emu.client.messages(user=aad)) == 2


# Rate limits and faults --------------------------------------------------------------------------


def test_thread_limit_throttles_with_retry_after_and_counts_early_calls(emu: RunningEmulator, teams: Teams) -> None:
    emu.client.config(limits=True)
    cid = teams.conversation(new_user(emu)["aad_object_id"])
    answers = [teams.send(cid, {"type": "message", "text": f"n{i}"}) for i in range(8)]
    assert [a.status for a in answers] == [201] * 7 + [429]
    throttled = answers[7]
    assert throttled.body["error"]["code"] == "Throttled"
    retry_after = int(throttled.headers["Retry-After"])
    assert retry_after >= 1
    # Arriving right after the 429, a call was already on its way: counted apart, not as early.
    assert teams.send(cid, {"type": "message", "text": "in flight"}).status == 429
    time.sleep(0.15)
    assert teams.send(cid, {"type": "message", "text": "ignores the wait"}).status == 429
    stats = emu.client.stats()
    assert stats["throttled"]["conversation"] == 3
    assert stats["in_flight_at_retry_after"] == 1
    assert stats["early_calls"] == 1  # the 10th call ignored the 8th's Retry-After
    time.sleep(retry_after)
    assert teams.send(cid, {"type": "message", "text": "after the wait"}).status == 201
    stats = emu.client.stats()
    assert stats["early_calls"] == 1 and stats["messages"] == 8


def test_global_limit_is_fifty_per_second_per_tenant(emu: RunningEmulator, teams: Teams) -> None:
    conversations = [teams.conversation(new_user(emu)["aad_object_id"]) for _ in range(8)]
    emu.client.config(limits=True)
    statuses = [teams.send(cid).status for _ in range(7) for cid in conversations]
    assert statuses.count(201) == 50 and statuses.count(429) == 6
    assert emu.client.stats()["throttled"]["app"] == 6


def test_limits_off_never_throttle(emu: RunningEmulator, teams: Teams) -> None:
    cid = teams.conversation(new_user(emu)["aad_object_id"])
    assert {teams.send(cid, {"type": "message", "text": str(i)}).status for i in range(20)} == {201}
    assert emu.client.stats()["throttled"] == {"app": 0, "conversation": 0, "create": 0}


def test_seeded_faults_are_deterministic_and_record_nothing(emu: RunningEmulator, teams: Teams) -> None:
    def run() -> list[int]:
        emu.client.reset()
        emu.client.config(faults={})
        cid = teams.conversation(new_user(emu)["aad_object_id"])
        emu.client.config(faults={"status_503": 0.4}, seed=7)
        return [teams.send(cid, {"type": "message", "text": str(i)}).status for i in range(30)]

    statuses = run()
    assert set(statuses) == {201, 503}
    stats = emu.client.stats()
    assert stats["faults"]["status_503"] == statuses.count(503)
    assert stats["messages"] == statuses.count(201)
    assert run() == statuses  # same seed, same sequence


def test_injected_429_has_retry_after_and_early_retries_are_counted(emu: RunningEmulator, teams: Teams) -> None:
    cid = teams.conversation(new_user(emu)["aad_object_id"])
    emu.client.config(faults={"status_429": 1.0, "retry_after_seconds": 2})
    first = teams.send(cid)
    assert first.status == 429 and first.headers["Retry-After"] == "2"
    time.sleep(0.15)  # past the moment a call could still have been on its way
    assert teams.send(cid).status == 429
    emu.client.config(faults={})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
        fresh = Teams(emu, acquire_token(emu)["access_token"])
    assert fresh.send(cid).status == 201  # still inside the 2 s: early, though it succeeds
    stats = emu.client.stats()
    assert stats["faults"]["status_429"] == 2 and stats["early_calls"] == 2 and stats["messages"] == 1
    # Each early call is described: its scope, how late after the first 429, how soon before the end,
    # and whether its caller had just fetched its token.
    samples = stats["early_call_samples"]
    assert [sample["scope"] for sample in samples] == ["app", "app"]
    assert all(150 <= sample["late_ms"] and 0 < sample["left_ms"] <= 2000 for sample in samples)
    assert [sample["new_token"] for sample in samples] == [False, True]


def test_a_call_is_judged_by_when_its_caller_made_it_not_by_when_it_arrived(emu: RunningEmulator, teams: Teams) -> None:
    cid = teams.conversation(new_user(emu)["aad_object_id"])
    emu.client.config(faults={"status_429": 1.0, "retry_after_seconds": 2})
    made_before_the_429 = time.time()
    assert teams.send(cid).status == 429
    emu.client.config(faults={})
    time.sleep(0.3)

    # Made before Teams said 429, arriving 300 ms later (it waited for a core): it was on its way.
    assert teams.send(cid, headers={"X-Crier-Sent-At": f"{made_before_the_429:.6f}"}).status == 201
    # Made now, inside the 2 s: early.
    assert teams.send(cid, headers={"X-Crier-Sent-At": f"{time.time():.6f}"}).status == 201
    # A stamp that cannot be right (from the future) is ignored: judged by its arrival, early.
    assert teams.send(cid, headers={"X-Crier-Sent-At": f"{time.time() + 60:.6f}"}).status == 201

    stats = emu.client.stats()
    assert (stats["in_flight_at_retry_after"], stats["early_calls"]) == (1, 2)
    assert all(sample["late_ms"] >= 300 and sample["arrived_ms"] >= 300 for sample in stats["early_call_samples"])


def test_duplicates_are_counted_per_user_and_bodies_can_be_dropped(emu: RunningEmulator, teams: Teams) -> None:
    emu.client.config(keep_bodies=False)
    first, second = (teams.conversation(new_user(emu)["aad_object_id"]) for _ in range(2))
    card = {"type": "message", "text": "Same", "attachments": [{"contentType": "x", "content": {"a": 1}}]}
    reordered = {"attachments": card["attachments"], "text": "Same", "type": "message"}
    assert teams.send(first, card).status == 201
    assert teams.send(first, reordered).status == 201  # same canonical JSON
    assert teams.send(second, card).status == 201  # another user: not a duplicate
    assert teams.send(first, {"type": "message", "text": "Other"}).status == 201
    assert emu.client.stats()["duplicates"] == 1
    messages = emu.client.messages()
    assert all(m["activity"] is None for m in messages)
    assert messages[0]["sha256"] == messages[1]["sha256"] == messages[2]["sha256"] != messages[3]["sha256"]


def test_config_rejects_unknown_fields(emu: RunningEmulator, teams: Teams) -> None:
    for fields, name in (({"bogus": 1}, "bogus"), ({"faults": {"status_999": 0.1}}, "status_999"),
                         ({"limits": "yes"}, "limits")):
        with pytest.raises(EmulatorError) as error:
            emu.client.config(**fields)
        assert error.value.status == 400 and name in error.value.body["error"]
    assert emu.client.config()["limits"] is False


# Activities to the bot ---------------------------------------------------------------------------


class FakeBot:
    """A tiny messaging endpoint that checks the emulator's tokens the way a Bot Framework bot must."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.keys = {key["kid"]: key for key in jwks["keys"]}
        self.received: list[tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = []
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        activity = await request.json()
        try:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            key = self.keys[jwt.get_unverified_header(token)["kid"]]
            assert activity["channelId"] in key["endorsements"]
            claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=APP_ID,
                                issuer="https://api.botframework.com")
            assert claims["serviceurl"] == activity["serviceUrl"]
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.errors.append(repr(exc))
            return web.Response(status=401)
        self.received.append((dict(request.headers), activity, claims))
        if activity["type"] == "message":
            return web.json_response({"echo": activity.get("text"), "value": activity.get("value")})
        return web.Response(status=200)

    def start(self) -> str:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            app = web.Application()
            app.router.add_post("/api/messages", self.handle)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
            self.port = self.runner.addresses[0][1]
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(5)
        return f"http://127.0.0.1:{self.port}/api/messages"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_install_say_and_uninstall_reach_the_bot_with_valid_tokens(emu: RunningEmulator, teams: Teams) -> None:
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    metadata = json.loads(pool.request("GET", emu.openid_metadata_url).data)
    assert metadata["issuer"] == "https://api.botframework.com"
    bot = FakeBot(json.loads(pool.request("GET", metadata["jwks_uri"]).data))
    emu.client.config(bot_endpoint=bot.start())
    try:
        aad = str(uuid.uuid4())
        installed = emu.client.install(aad)
        assert installed["bot_status"] == [200, 200]
        assert installed["service_url"] == emu.service_url and installed["user_id"].startswith("29:")
        said = emu.client.say(aad, text="stop")
        assert said["bot_status"] == 200 and said["bot_body"]["echo"] == "stop"
        submitted = emu.client.say(aad, value={"action": "ack", "campaign": 7})
        assert submitted["bot_body"]["value"] == {"action": "ack", "campaign": 7}
        assert emu.client.uninstall(aad)["bot_status"] == [200]
    finally:
        bot.stop()

    assert bot.errors == []
    kinds = [(a["type"], a.get("action")) for _, a, _ in bot.received]
    assert kinds == [("conversationUpdate", None), ("installationUpdate", "add"), ("message", None),
                     ("message", None), ("installationUpdate", "remove")]
    headers, update, claims = bot.received[0]
    assert headers["x-ms-tenant-id"] == TENANT
    assert headers["x-ms-conversation-id"] == installed["conversation_id"]
    assert update["conversation"] == {"conversationType": "personal", "tenantId": TENANT,
                                      "id": installed["conversation_id"]}
    assert update["membersAdded"] == [{"id": f"28:{APP_ID}"}, {"id": installed["user_id"], "aadObjectId": aad}]
    assert update["from"]["aadObjectId"] == aad and update["channelData"]["tenant"]["id"] == TENANT
    assert claims["serviceurl"] == emu.service_url and claims["aud"] == APP_ID
    assert bot.received[2][1]["text"] == "stop" and "text" not in bot.received[3][1]
    assert emu.client.user(aad)["uninstalled"] is True
    # Like Teams, the channel keeps its token and puts it on each activity rather than signing one per activity.
    assert len({headers["Authorization"] for headers, _, _ in bot.received}) == 1


def test_the_channel_signs_a_new_token_as_the_one_it_keeps_nears_its_expiry(monkeypatch) -> None:
    from emulator import bot_client
    from emulator.tokens import CHANNEL_TOKEN_SECONDS, SigningKey

    now = [1_800_000_000.0]
    monkeypatch.setattr(bot_client.time, "time", lambda: now[0])
    monkeypatch.setattr("emulator.tokens.time.time", lambda: now[0])
    client = bot_client.BotClient(SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048)), APP_ID)
    first = client.token("https://smba.example/amer/")
    assert client.token("https://smba.example/amer/") == first
    other = client.token("https://smba.example/emea/")
    assert other != first and jwt.decode(other, options={"verify_signature": False})["serviceurl"].endswith("/emea/")
    now[0] += CHANNEL_TOKEN_SECONDS - bot_client.TOKEN_RENEW_BEFORE_SECONDS - 1
    assert client.token("https://smba.example/amer/") == first  # still well within its hour
    now[0] += 2
    renewed = client.token("https://smba.example/amer/")
    assert renewed != first
    assert jwt.decode(renewed, options={"verify_signature": False})["exp"] == int(now[0]) + CHANNEL_TOKEN_SECONDS


# The inbox page and the command line --------------------------------------------------------------


def test_inbox_pages_escape_everything(emu: RunningEmulator, teams: Teams) -> None:
    user = new_user(emu, name="<script>alert('name')</script>")
    cid = teams.conversation(user["aad_object_id"])
    card = {
        "type": "AdaptiveCard", "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": "<img src=x onerror=alert(1)>Quarterly update"},
            {"type": "Image", "url": "https://example.com/chart.png"},
            {"type": "FactSet", "facts": [{"title": "Due", "value": "Friday"}]},
        ],
        "actions": [{"type": "Action.Submit", "title": "Acknowledge", "data": {"ack": 1}}],
    }
    activity = {"type": "message", "text": "**Hi** <b>there</b>",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
    sent = teams.send(cid, activity)
    assert teams.send(cid, {"type": "message", "text": "Second"}).status == 201
    path = f"/v3/conversations/{quote(cid, safe='')}/activities/{sent.body['id']}"
    assert teams.call("PUT", path, activity).status == 200
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    index = pool.request("GET", emu.url + "/").data.decode()
    assert "&lt;script&gt;" in index and "<script>alert" not in index
    assert f'href="/inbox/{user["aad_object_id"]}"' in index and 'http-equiv="refresh" content="3"' in index
    inbox = pool.request("GET", f"{emu.url}/inbox/{user['aad_object_id']}").data.decode()
    assert "**Hi** &lt;b&gt;there&lt;/b&gt;" in inbox
    assert "&lt;img src=x onerror=alert(1)&gt;Quarterly update" in inbox and "<img src=x" not in inbox
    assert '<img src="https://example.com/chart.png"' in inbox
    assert "Due" in inbox and "Friday" in inbox and "Acknowledge" in inbox
    assert "updated ×1" in inbox and inbox.index("Second") < inbox.index("Quarterly")  # newest first


def test_restart_reuses_the_ca_and_signing_key(emu: RunningEmulator, token: str) -> None:
    pool = urllib3.PoolManager(ca_certs=emu.ca_file)
    kid = json.loads(pool.request("GET", f"{emu.url}/botframework/v1/.well-known/keys").data)["keys"][0]["kid"]
    ca_before = Path(emu.ca_file).read_bytes()
    with start_emulator(emu.state_dir, port=0, app_id=APP_ID, app_password=PASSWORD, tenant_id=TENANT,
                        env={"EMULATOR_HOSTNAMES": "emulator"}) as second:
        assert second.port != emu.port and Path(second.ca_file).read_bytes() == ca_before
        # The server certificate was remade, by the same CA, to also name the Docker service.
        server = x509.load_pem_x509_certificate((emu.state_dir / "server.pem").read_bytes())
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "emulator" in names.get_values_for_type(x509.DNSName)
        keys = json.loads(pool.request("GET", f"{second.url}/botframework/v1/.well-known/keys").data)
        assert keys["keys"][0]["kid"] == kid
        # A token from the first emulator is good on the second: same key.
        user = new_user(second)
        assert Teams(second, token).create(user["aad_object_id"]).status == 201


def test_bad_arguments_exit_with_code_2_and_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--limits", "sometimes"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["emulator: error: --limits must be 'on' or 'off', not 'sometimes'"]


def test_a_refusal_by_arrival_says_whether_the_caller_was_over_the_limit_when_it_made_the_calls(
    emu: RunningEmulator, teams: Teams
) -> None:
    conversations = [teams.conversation(new_user(emu)["aad_object_id"]) for _ in range(8)]
    emu.client.config(limits=True)
    spread = time.time() - 5  # made 30 ms apart, five seconds ago: 34 a second, arriving all at once
    stamps = [spread + 0.03 * n for n in range(56)]
    calls = [(cid, stamp) for cid, stamp in zip(conversations * 7, stamps, strict=True)]
    statuses = [teams.send(cid, headers={"X-Crier-Sent-At": f"{stamp:.6f}"}).status for cid, stamp in calls]
    # 56 calls arrive inside a second on a quiet machine (6 refused); fewer on a loaded one. Whatever
    # arrived over the limit, none of it was over the limit when it was made.
    by_arrival = statuses.count(429)
    assert 1 <= by_arrival <= 6
    assert (emu.client.stats()["throttled"]["app"], emu.client.stats()["app_throttled_when_made"]) == (by_arrival, 0)

    emu.client.config(limits=False)
    others = [teams.conversation(new_user(emu)["aad_object_id"]) for _ in range(8)]  # their own per-chat limits
    emu.client.config(limits=True)
    time.sleep(1.1)
    now = time.time()  # made in the same instant: over the limit however they travel
    statuses = [teams.send(cid, headers={"X-Crier-Sent-At": f"{now:.6f}"}).status for cid in others * 7]
    when_made = statuses.count(429)
    assert 1 <= when_made <= 6
    stats = emu.client.stats()
    assert stats["throttled"] == {"app": by_arrival + when_made, "conversation": 0, "create": 0}
    assert stats["app_throttled_when_made"] == when_made
