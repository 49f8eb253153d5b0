"""The emulator's Teams teams, as a real process over real HTTPS: the bot added to a team, removed and the
team renamed (what reaches the bot), the team's roster paged through the Bot Connector, and one-to-one
chats the bot opens with members who never installed it.

Run: .venv/bin/python -m pytest tests/emulator -q -p no:django
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
import urllib3

from emulator.client import EmulatorError
from emulator.process import RunningEmulator

from .identity import APP_ID, TENANT
from .test_emulator import FakeBot, Teams, acquire_token

NOWHERE = "http://127.0.0.1:9/api/messages"


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
    fake = FakeBot(json.loads(pool.request("GET", f"{emu.url}/botframework/v1/.well-known/keys").data))
    emu.client.config(bot_endpoint=fake.start())
    yield fake
    fake.stop()
    assert fake.errors == []


def people(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def roster(teams: Teams, team_id: str, **query: Any) -> Any:
    path = f"/v3/conversations/{quote(team_id, safe='')}/pagedmembers"
    if query:
        path += "?" + "&".join(f"{key}={quote(str(value), safe='')}" for key, value in query.items())
    return teams.call("GET", path)


def test_installing_removing_and_renaming_reach_the_bot_as_teams_sends_them(emu, teams, bot):
    owner, member = people(2)
    emu.client.graph_users([{"id": owner, "displayName": "Ada Lovelace"}])
    team = emu.client.teams_create("Engineering", [owner, member])

    installed = emu.client.team_install(team["id"])
    renamed = emu.client.team_rename(team["id"], "Platform Engineering")
    removed = emu.client.team_uninstall(team["id"])

    assert [installed["bot_status"], renamed["bot_status"], removed["bot_status"]] == [[200], [200], [200]]
    assert installed["conversation_id"] == team["id"] and installed["service_url"] == emu.service_url
    [(headers, added, _), (_, rename, _), (_, gone, _)] = bot.received
    owner_id = emu.client.user(owner)["user_id"]
    assert (headers["x-ms-conversation-id"], headers["x-ms-tenant-id"]) == (team["id"], TENANT)
    assert added["type"] == "conversationUpdate" and added["membersAdded"] == [{"id": f"28:{APP_ID}"}]
    assert added["conversation"] == {"conversationType": "channel", "tenantId": TENANT, "id": team["id"],
                                     "isGroup": True}
    assert added["channelData"] == {
        "eventType": "teamMemberAdded", "tenant": {"id": TENANT},
        "team": {"id": team["id"], "name": "Engineering", "aadGroupId": team["aad_group_id"]},
        "settings": {"selectedChannel": {"id": team["id"]}},
    }
    assert added["from"] == {"id": owner_id, "name": "Ada Lovelace", "aadObjectId": owner}
    assert added["serviceUrl"] == emu.service_url and added["recipient"]["id"] == f"28:{APP_ID}"
    assert rename["channelData"]["eventType"] == "teamRenamed"
    assert rename["channelData"]["team"]["name"] == "Platform Engineering"
    assert "membersAdded" not in rename and "membersRemoved" not in rename
    assert gone["membersRemoved"] == [{"id": f"28:{APP_ID}"}]
    assert (gone["channelData"]["eventType"], gone["conversation"]["id"]) == ("teamMemberRemoved", team["id"])


def test_members_new_to_teams_have_not_installed_the_bot_and_others_keep_their_install(emu, teams):
    installed = emu.client.register_users([{"aad_object_id": str(uuid.uuid4()), "installed": True}])[0]
    newcomer = str(uuid.uuid4())

    team = emu.client.teams_create("Sales", [installed["aad_object_id"], newcomer.upper()])

    assert team["members"] == [installed["aad_object_id"], newcomer] and team["bot_installed"] is False
    assert team["id"].startswith("19:") and team["id"].endswith("@thread.tacv2")
    assert emu.client.user(newcomer)["installed"] is False
    assert emu.client.user(installed["aad_object_id"])["installed"] is True
    assert [listed["id"] for listed in emu.client.teams_list()] == [team["id"]]


def test_the_control_api_checks_everything_first_and_knows_its_teams(emu, teams):
    for fields, where in (
        ({"name": "", "members": []}, "name"),
        ({"name": "Sales", "members": [str(uuid.uuid4()), "bob"]}, "members[1]"),
        ({"name": "Sales", "members": [], "id": "team-one"}, "id"),
        ({"name": "Sales", "members": [], "aad_group_id": "group"}, "aad_group_id"),
    ):
        with pytest.raises(EmulatorError) as refused:
            emu.client.request("POST", "/_emulator/teams", fields)
        assert refused.value.status == 400 and where in refused.value.body["error"], fields
    assert emu.client.teams_list() == [] and emu.client.users() == []

    for call in (lambda: emu.client.team_install("19:nothing@thread.tacv2"),
                 lambda: emu.client.team_members("19:nothing@thread.tacv2", add=[str(uuid.uuid4())])):
        with pytest.raises(EmulatorError) as missing:
            call()
        assert missing.value.status == 404

    team_id, group_id = "19:my-team_1@thread.tacv2", str(uuid.uuid4())
    first, second = people(2)
    assert emu.client.teams_create("Old", [first], id=team_id, aad_group_id=group_id)["aad_group_id"] == group_id
    emu.client.team_install(team_id)  # nobody listens: the bot's status is an error text
    replaced = emu.client.teams_create("New", [second], id=team_id)
    assert replaced == {"id": team_id, "name": "New", "aad_group_id": group_id, "members": [second],
                        "bot_installed": True}
    changed = emu.client.team_members(team_id, add=[first], remove=[second])
    assert changed["members"] == [first]
    with pytest.raises(EmulatorError) as twice:
        emu.client.team_install(team_id)
    assert twice.value.status == 409


def test_the_roster_is_refused_until_the_bot_is_in_the_team(emu, teams):
    team = emu.client.teams_create("Quiet", people(2))

    for team_id in (team["id"], "19:unknown@thread.tacv2"):
        refused = roster(teams, team_id)
        assert refused.status == 403
        assert refused.body == {"error": {"code": "BotNotInConversationRoster",
                                          "message": "The bot is not part of the conversation roster."}}
    emu.client.team_install(team["id"])
    assert roster(teams, team["id"]).status == 200
    emu.client.team_uninstall(team["id"])
    assert roster(teams, team["id"]).status == 403


def test_the_roster_comes_page_by_page_with_a_continuation_token(emu, teams):
    members = people(120)
    emu.client.graph_users([{"id": members[0], "displayName": "Ada Lovelace", "mail": "ada@contoso.com",
                             "userPrincipalName": "ada@contoso.com", "givenName": "Ada", "surname": "Lovelace"}])
    team = emu.client.teams_create("Everyone", members)
    emu.client.team_install(team["id"])

    pages, token = [], None
    while True:
        answer = roster(teams, team["id"], pageSize=10, **({"continuationToken": token} if token else {}))
        assert answer.status == 200, answer
        pages.append(answer.body["members"])
        token = answer.body.get("continuationToken")
        if token is None:
            assert "continuationToken" not in answer.body
            break

    assert [len(page) for page in pages] == [50, 50, 20]  # a pageSize under 50 counts as 50
    assert [member["aadObjectId"] for page in pages for member in page] == members
    assert pages[0][0] == {"id": emu.client.user(members[0])["user_id"], "name": "Ada Lovelace",
                           "aadObjectId": members[0], "email": "ada@contoso.com",
                           "userPrincipalName": "ada@contoso.com", "givenName": "Ada", "surname": "Lovelace",
                           "tenantId": TENANT, "userRole": "user"}
    stranger = pages[0][1]
    assert stranger["email"] == stranger["userPrincipalName"] == f"{members[1].replace('-', '')[:8]}@emulator.test"
    assert stranger["name"] == emu.client.user(members[1])["name"] and stranger["id"].startswith("29:")
    assert len(roster(teams, team["id"], pageSize=1000).body["members"]) == 120  # over 500 counts as 500
    assert len(roster(teams, team["id"]).body["members"]) == 120  # 200 unless given


def test_a_bad_continuation_token_is_a_bad_argument(emu, teams):
    team, other = emu.client.teams_create("A", people(60)), emu.client.teams_create("B", people(60))
    emu.client.team_install(team["id"])
    emu.client.team_install(other["id"])
    token = roster(teams, other["id"], pageSize=50).body["continuationToken"]

    for bad in ("not-a-token", token):
        answer = roster(teams, team["id"], continuationToken=bad)
        assert answer.status == 400 and answer.body["error"]["code"] == "BadArgument", bad
    assert roster(teams, team["id"], pageSize="many").status == 400


def test_the_roster_is_a_connector_call_checked_and_counted_like_the_others(emu, teams):
    team = emu.client.teams_create("A", people(1))
    emu.client.team_install(team["id"])
    requests = emu.client.stats()["requests"]

    good, teams.auth = teams.auth, {"Authorization": "Bearer not-a-jwt"}
    assert roster(teams, team["id"]).status == 401
    teams.auth = good
    emu.client.config(faults={"status_503": 1.0})
    assert roster(teams, team["id"]).status == 503
    emu.client.config(faults={})
    assert teams.call("POST", f"/v3/conversations/{quote(team['id'], safe='')}/pagedmembers", {}).status == 405
    assert emu.client.stats()["requests"] == requests + 3
    assert emu.client.stats()["faults"]["status_503"] == 1


def test_a_team_member_gets_a_chat_by_29_id_only_while_the_bot_is_in_their_team(emu, teams):
    member, colleague = people(2)
    team = emu.client.teams_create("Ops", [colleague, member])
    user_id = emu.client.user(member)["user_id"]

    assert teams.create(user_id).status == 403  # the bot is in none of their teams yet
    emu.client.team_install(team["id"])
    by_aad = teams.create(member)
    created = teams.create(user_id)

    assert (by_aad.status, by_aad.body["error"]["code"]) == (403, "ForbiddenOperationException")
    assert created.status == 201 and created.body["id"].startswith("a:")
    assert teams.send(created.body["id"]).status == 201
    assert emu.client.user(member)["via_team"] is True and emu.client.user(member)["installed"] is False

    emu.client.team_uninstall(team["id"])
    gone = teams.send(created.body["id"])
    # Not an opt-out (the person blocked nothing): the bot has no way in any more.
    assert (gone.status, gone.body["error"]["code"]) == (403, "ForbiddenOperationException")
    assert teams.create(user_id).status == 403
    emu.client.team_install(team["id"])
    assert teams.send(created.body["id"]).status == 201
    emu.client.team_members(team["id"], remove=[member])  # no longer in the team
    left = teams.send(created.body["id"])
    assert (left.status, left.body["error"]["code"]) == (403, "ForbiddenOperationException")
    assert [message["conversation_id"] for message in emu.client.messages(user=member)] == [created.body["id"]] * 2


def test_blocked_and_uninstalled_members_keep_their_answers(emu, teams):
    blocked, uninstalled = people(2)
    team = emu.client.teams_create("Ops", [blocked, uninstalled])
    emu.client.team_install(team["id"])
    chat = teams.create(emu.client.user(blocked)["user_id"]).body["id"]
    emu.client.block(blocked)
    emu.client.uninstall(uninstalled)

    assert teams.send(chat).body["error"]["code"] == "ConversationBlockedByUser"
    refused = teams.create(emu.client.user(uninstalled)["user_id"])
    assert (refused.status, refused.body["error"]["code"]) == (403, "ForbiddenOperationException")
