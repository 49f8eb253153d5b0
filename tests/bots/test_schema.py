"""Reading inbound activities: the quick reading gives the very models the library's own ``from_dict`` gives, for the
activities Teams sends and for anything else (which the library reads)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest
from botbuilder.schema import Activity
from msrest.exceptions import DeserializationError
from msrest.serialization import Model

from bots import schema
from bots.schema import ActivityShapeError, parse_activity
from emulator import bot_client
from emulator.state import User

USER = User(0, aad_object_id="6f1f3c2e-8a7b-4c35-9f4e-2f0c1d9b7a11", tenant_id="72f988bf-0000", installed=True,
            blocked=False, name="Ada Lovelace")
ARGS = (USER, "a:1Xy-conversation", "https://smba.trafficmanager.net/emea/", "0c0b6e52-app")


def _plain(value: Any) -> Any:
    """A model as nested dicts of every attribute (additional properties included), to compare two readings."""
    if isinstance(value, Model):
        return {"model": type(value).__name__, **{name: _plain(item) for name, item in vars(value).items()}}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, datetime):
        return ("moment", value.isoformat(), value.tzname(), type(value.tzinfo).__name__)
    return value


def _teams_samples() -> list[dict[str, Any]]:
    invoke = bot_client.invoke_activity(*ARGS, "1733000000001", {"type": "Action.Execute", "verb": "acknowledge",
                                                                 "data": {"campaign": "c", "version": 2}})
    samples = [
        *bot_client.install_activities(*ARGS),
        bot_client.uninstall_activity(*ARGS),
        bot_client.message_activity(*ARGS, "stop", None),
        bot_client.message_activity(*ARGS, None, {"crier_action": "opt_out", "category": "news"}),
        bot_client.read_receipt_activity(*ARGS, "1733000000001"),
        bot_client.reaction_activity(*ARGS, "1733000000001", "like", removed=False),
        bot_client.reaction_activity(*ARGS, "1733000000001", "heart", removed=True),
        invoke,
    ]
    channel = copy.deepcopy(samples[2])
    channel["conversation"] = {"isGroup": True, "conversationType": "channel", "tenantId": USER.tenant_id,
                               "id": "19:abc@thread.tacv2;messageid=1"}
    channel["channelData"] = {"teamsChannelId": "19:abc", "teamsTeamId": "19:team",
                              "team": {"id": "19:team", "name": "Comms", "aadGroupId": "g"},
                              "tenant": {"id": USER.tenant_id}}
    channel["entities"] = [{"type": "mention", "text": "<at>Crier</at>",
                            "mentioned": {"id": "28:app", "name": "Crier"}}]
    channel["attachments"] = [{"contentType": "text/html", "content": "<div>hi</div>"}]
    channel["timestamp"] = "2026-12-07T01:02:03.1234567Z"  # Teams' seven digits
    channel["localTimestamp"] = "2026-12-07T02:02:03.1234567+01:00"
    channel["localTimezone"] = "Europe/Paris"
    channel["textFormat"] = "plain"
    channel["somethingNew"] = {"nested": [1, 2]}  # a field the library does not know: kept aside, as it keeps it
    channel["from"]["userPrincipalName"] = "ada@example.com"
    channel["replyToId"] = None
    samples.append(channel)
    return samples


@pytest.mark.parametrize("activity", _teams_samples(), ids=lambda a: f"{a['type']}-{a.get('name') or a.get('action')}")
def test_teams_activities_are_read_quickly_to_the_same_models_as_the_library_reads_them(activity, monkeypatch):
    expected = _plain(Activity().from_dict(copy.deepcopy(activity)))
    monkeypatch.setattr(Activity, "from_dict", lambda *a, **k: pytest.fail("read by the library"))

    assert _plain(parse_activity(activity)) == expected


@pytest.mark.parametrize("change", [
    lambda a: a["conversation"].update({"TenantId": a["conversation"].pop("tenantId")}),  # another casing
    lambda a: a.update({"timestamp": "2026-12-07T01:02:03"}),  # no time zone
    lambda a: a.update({"type": 5}),  # the library keeps a number where a string belongs
    lambda a: a.update({"historyDisclosed": "true"}),  # and reads a boolean from a string
    lambda a: a.update({"reply_to_id": "17"}),  # a Python attribute's name, which the library also reads
    lambda a: a["conversation"].update({"tenantID": "another"}),  # one field in two casings
], ids=["casing", "naive-time", "number-for-string", "string-for-boolean", "attribute-name", "two-casings"])
def test_anything_else_is_read_by_the_library_as_before(change):
    activity = bot_client.read_receipt_activity(*ARGS, "1733000000001")
    change(activity)

    assert _plain(parse_activity(copy.deepcopy(activity))) == _plain(Activity().from_dict(activity))


def test_a_field_neither_reading_takes_is_named():
    activity = bot_client.reaction_activity(*ARGS, "1733000000001", "like", removed=False)
    activity["reactionsAdded"] = [{"type": "like"}, "heart"]

    with pytest.raises(ActivityShapeError) as error:
        parse_activity(activity)
    assert error.value.field == "reactionsAdded[1]"
    assert schema._keys(Activity)[1]["from"] == ("from_property", "ChannelAccount")


@pytest.mark.parametrize("moment", [
    "2024-01-02 03:04:05Z", "20240102T030405Z", "2024-W01-2T03:04:05Z", "2024-01-02T03:04Z",
    "2024-01-02T03:04:05+05:30:15", "2024-01-02T03:04:05\x00Z", "9999-12-31T23:59:59-01:00",
], ids=["space", "basic", "week", "minutes", "offset-seconds", "nul", "out-of-range"])
def test_a_moment_the_library_refuses_is_refused_too(moment):
    activity = bot_client.read_receipt_activity(*ARGS, "1733000000001")
    activity["timestamp"] = moment
    try:
        expected = _plain(Activity().from_dict(copy.deepcopy(activity)))
    except DeserializationError:
        with pytest.raises(ActivityShapeError) as error:
            parse_activity(activity)
        assert error.value.field == "timestamp"
    else:
        assert _plain(parse_activity(activity)) == expected


@pytest.mark.parametrize("field", ["reactionsAdded", "membersAdded", "membersRemoved", "entities"])
def test_a_list_of_accounts_reactions_or_entities_with_a_null_in_it_is_refused(field):
    activity = bot_client.reaction_activity(*ARGS, "1733000000001", "like", removed=False)
    activity[field] = [{"type": "like", "id": "29:x"}, None]

    with pytest.raises(ActivityShapeError) as error:
        parse_activity(activity)
    assert error.value.field == f"{field}[1]"
