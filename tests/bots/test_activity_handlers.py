"""Inbound activities go to one handler each, by activity type and action (bots/services.py)."""

import pytest
from django.conf import settings

from bots import services
from bots.schema import parse_activity

BOT = {"id": f"28:{settings.BOT_APP_ID}"}
PERSON = {"id": "29:someone"}


@pytest.mark.parametrize("data, key", [
    ({"type": "conversationUpdate", "membersAdded": [PERSON, BOT]}, ("conversationUpdate", "add")),
    ({"type": "conversationUpdate", "membersRemoved": [BOT]}, ("conversationUpdate", "remove")),
    ({"type": "conversationUpdate", "membersAdded": [PERSON]}, ("conversationUpdate", "")),
    ({"type": "installationUpdate", "action": "add-upgrade"}, ("installationUpdate", "add")),
    ({"type": "installationUpdate", "action": "remove"}, ("installationUpdate", "remove")),
    ({"type": "installationUpdate"}, ("installationUpdate", "")),
    ({"type": "message", "text": "stop"}, ("message", "")),
    ({"type": "message", "value": {"crier_action": "opt_out"}}, ("message", "opt_out")),
    ({"type": "message", "value": {"crier_action": 7}}, ("message", "")),
    ({"type": "message", "value": "opt_out"}, ("message", "")),
    ({"type": "invoke", "name": "adaptiveCard/action"}, ("invoke", "")),
])
def test_an_activity_is_known_by_its_type_and_action(data, key):
    assert services.activity_key(parse_activity(data)) == key


def test_each_type_and_action_has_at_most_one_handler():
    with pytest.raises(ValueError, match="two handlers for message 'opt_out'"):
        services.handles("message", "opt_out")(lambda activity: [])


@pytest.mark.django_db
def test_an_activity_no_handler_knows_is_answered_by_its_types_plain_handler_or_not_at_all():
    unknown_action = {"type": "message", "text": "hello", "value": {"crier_action": "dance"},
                      "from": {"id": "29:x", "aadObjectId": "7d5b7d1a-8bd0-4f1c-9c9d-5e2a0d3c1b11"}}
    assert services.activity_handle(data=unknown_action) == [services.REPLY_HELP]
    assert services.activity_handle(data={"type": "typing"}) == []
