"""The bot added to a team, removed from it, the team renamed; and the bot mentioned outside its
one-to-one chats, where it records nothing about the person."""

import pytest
from django.conf import settings

from bots import services
from bots.models import TeamsAddress, TeamsTeam
from bots.schema import parse_activity
from campaigns.models import OptOut
from tests import factories

BOT = {"id": f"28:{settings.BOT_APP_ID}"}
TEAM_ID = "19:abcDEF123@thread.tacv2"
ADDER = {"id": "29:adder", "aadObjectId": "7d5b7d1a-8bd0-4f1c-9c9d-5e2a0d3c1b11"}


def team_update(event: str, *, name: str = "Leeds office", **fields) -> dict:
    return {
        "type": "conversationUpdate", "serviceUrl": "https://smba.trafficmanager.net/emea/", "from": ADDER,
        "conversation": {"id": TEAM_ID, "conversationType": "channel", "isGroup": True, "tenantId": factories.TENANT},
        "channelData": {"eventType": event, "team": {"id": TEAM_ID, "name": name, "aadGroupId": "0f1e2d3c-0000-4000-8000-000000000001"},
                        "tenant": {"id": factories.TENANT}},
        **fields,
    }


@pytest.mark.parametrize("data, key", [
    (team_update("teamMemberAdded", membersAdded=[BOT]), ("conversationUpdate", "team_add")),
    (team_update("teamMemberRemoved", membersRemoved=[BOT]), ("conversationUpdate", "team_remove")),
    (team_update("teamRenamed"), ("conversationUpdate", "team_changed")),
    ({**team_update(""), "type": "installationUpdate", "action": "add"}, ("installationUpdate", "team_add")),
    ({**team_update(""), "type": "message", "text": "stop"}, ("message", "elsewhere")),
    ({"type": "message", "text": "stop", "conversation": {"id": "a:1", "conversationType": "personal"}}, ("message", "")),
])
def test_an_activity_from_a_team_is_known_apart_from_the_personal_chat(data, key):
    assert services.activity_key(parse_activity(data)) == key


@pytest.mark.django_db
def test_adding_the_bot_to_a_team_records_the_team_and_nothing_about_the_person_who_added_it():
    services.activity_handle(data=team_update("teamMemberAdded", membersAdded=[BOT]))
    team = TeamsTeam.objects.get(team_id=TEAM_ID)
    assert (team.name, team.installed, team.tenant_id) == ("Leeds office", True, factories.TENANT)
    assert team.service_url == "https://smba.trafficmanager.net/emea/"
    assert team.aad_group_id == "0f1e2d3c-0000-4000-8000-000000000001"
    assert team.installed_at is not None
    assert not TeamsAddress.objects.exists()  # the channel is not the adder's own chat with the bot


@pytest.mark.django_db
def test_a_team_renamed_keeps_its_new_name_and_removing_the_bot_marks_it_so():
    services.activity_handle(data=team_update("teamMemberAdded", membersAdded=[BOT]))
    services.activity_handle(data=team_update("teamRenamed", name="Leeds and York"))
    assert TeamsTeam.objects.get(team_id=TEAM_ID).name == "Leeds and York"
    services.activity_handle(data=team_update("teamMemberRemoved", membersRemoved=[BOT], name="Leeds and York"))
    assert TeamsTeam.objects.get(team_id=TEAM_ID).installed is False


@pytest.mark.django_db
def test_a_change_in_a_team_crier_was_never_added_to_is_not_recorded():
    services.activity_handle(data=team_update("teamRenamed", name="Somewhere"))
    assert not TeamsTeam.objects.exists()


@pytest.mark.django_db
def test_stop_typed_in_a_channel_opts_nobody_out_and_points_to_the_personal_chat():
    person = factories.recipient(aad_object_id=ADDER["aadObjectId"])
    replies = services.activity_handle(data={**team_update(""), "type": "message", "text": "stop"})
    assert replies == [services.REPLY_ELSEWHERE.format(bot=settings.BOT_NAME)]
    assert not OptOut.objects.filter(recipient=person).exists()
    assert not TeamsAddress.objects.exists()


@pytest.mark.django_db
def test_a_team_id_that_is_not_one_is_not_recorded():
    data = team_update("teamMemberAdded", membersAdded=[BOT])
    data["channelData"]["team"]["id"] = "a:not-a-team"
    data["conversation"]["id"] = "a:not-a-team"
    services.activity_handle(data=data)
    assert not TeamsTeam.objects.exists()
