"""The call that pops an urgent campaign's notice up in people's Teams activity feed (``bots.notices``), against
the emulator's Microsoft Graph: its body, its pace, a token renewed on 412, and each refusal as a code with what
to do."""

from __future__ import annotations

import uuid

import pytest

from bots.graph import GraphError
from bots.installs import InstallPace
from bots.notices import MOST_RECIPIENTS, Notifier, NoticeRefused, notice_body, notice_graph

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def people(teams, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    teams.client.register_users([{"aad_object_id": aad, "installed": True} for aad in ids])
    return ids


def test_it_reaches_up_to_a_hundred_people_in_one_call_of_the_declared_activity_type(teams):
    ids = people(teams, MOST_RECIPIENTS)

    Notifier().send(text="Office closed", aad_object_ids=ids)

    stats = teams.client.graph_stats()
    assert (stats["activity_calls"], stats["activity_delivered"]) == (1, MOST_RECIPIENTS)
    with pytest.raises(ValueError, match="a notification goes to 1 to 100 people, not 101"):
        Notifier().send(text="Office closed", aad_object_ids=[*ids, str(uuid.uuid4())])


def test_its_calls_are_paced_at_the_setting(settings):
    settings.GRAPH_NOTICES_PER_SECOND = 1.5
    clock = Clock()
    pace = InstallPace(clock=clock, sleep=clock.sleep, setting="GRAPH_NOTICES_PER_SECOND", most_in_a_second=2)

    moments = []
    for _ in range(4):
        pace.wait("tenant")
        moments.append(round(clock.now, 3))

    assert moments == [0.0, 0.667, 1.333, 2.0]


def test_a_412_has_a_new_token_asked_for_and_the_call_made_again(monkeypatch, teams):
    answers = [GraphError(status=412, code="PreconditionFailed", message="45 minutes"), {}]
    posted = []

    def post(url, body, *, needs=""):
        posted.append((url, body))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    invalidated = []
    monkeypatch.setattr(notice_graph, "post", post)
    monkeypatch.setattr(notice_graph.tokens, "invalidate", lambda: invalidated.append(1))

    Notifier().send(text="Office closed", aad_object_ids=[str(uuid.uuid4())])

    assert (len(posted), invalidated) == (2, [1])
    assert posted[0] == posted[1] and posted[0][0].endswith("/teamwork/sendActivityNotificationToRecipients")
    assert posted[0][1]["previewText"] == {"content": "Office closed"}


@pytest.mark.parametrize(("status", "code", "transient"), [
    (401, "GraphCredentialsRefused", False),
    (403, "NoticeConsentMissing", False),
    (400, "NoticeNotDeclared", False),
    (404, "GraphRefused", False),  # nothing a later try changes: an administrator reads why
    (429, "GraphUnavailable", True),
    (503, "GraphUnavailable", True),
    (502, "GraphNoAnswer", False),  # Graph may have carried it out: never made again
    (412, "NoticeTokenTooShort", False),  # twice: the new token was no better
])
def test_each_refusal_is_a_code_and_what_to_do(monkeypatch, status, code, transient):
    def post(url, body, *, needs=""):
        raise GraphError(status=status, code="X", message="no")

    monkeypatch.setattr(notice_graph, "post", post)
    monkeypatch.setattr(notice_graph.tokens, "invalidate", lambda: None)

    with pytest.raises(NoticeRefused) as refused:
        Notifier(pace=InstallPace(per_second=1000)).send(text="Office closed", aad_object_ids=[str(uuid.uuid4())])

    assert (refused.value.code, refused.value.transient) == (code, transient)
    assert refused.value.message


def test_an_empty_graph_authority_is_refused_before_any_call(settings):
    settings.GRAPH_AUTHORITY = ""

    with pytest.raises(NoticeRefused) as refused:
        Notifier().send(text="Office closed", aad_object_ids=[str(uuid.uuid4())])

    assert refused.value.code == "GraphCredentialsRefused" and refused.value.message == (
        "GRAPH_AUTHORITY is empty: set BOT_TENANT_ID (or GRAPH_AUTHORITY) to the organisation's tenant, whose Graph "
        "sends urgent notices (docs/configuration.md).")


def test_the_body_is_graphs_with_the_recipients_as_entra_users():
    body = notice_body(text="Office closed", aad_object_ids=["a", "b"])

    assert body["activityType"] == "urgentAnnouncement" and body["templateParameters"] == []
    assert body["previewText"] == {"content": "Office closed"}
    assert body["topic"]["source"] == "text" and body["topic"]["webUrl"].startswith("https://teams.microsoft.com/l/chat/")
    assert [r["userId"] for r in body["recipients"]] == ["a", "b"]
    assert {r["@odata.type"] for r in body["recipients"]} == {"microsoft.graph.aadUserNotificationRecipient"}


def test_a_call_whose_answer_is_lost_is_never_made_again(monkeypatch, teams):
    from core import http

    calls = []

    def timed_out(*args, **kwargs):
        calls.append(args)
        raise http.HttpTimeout("read timed out")

    monkeypatch.setattr(http, "request", timed_out)

    with pytest.raises(NoticeRefused) as refused:
        Notifier(pace=InstallPace(per_second=1000)).send(text="Office closed", aad_object_ids=[str(uuid.uuid4())])

    assert (refused.value.code, refused.value.transient, len(calls)) == ("GraphNoAnswer", False, 1)


def test_a_refused_call_is_made_again_after_graphs_wait(teams):
    ids = people(teams, 2)
    teams.client.graph_config(throttle_next=1, retry_after_seconds=1)

    Notifier(pace=InstallPace(per_second=1000)).send(text="Office closed", aad_object_ids=ids)

    assert teams.client.graph_stats()["activity_delivered"] == 2


def test_its_pace_is_the_notices_own_setting_and_never_more_than_graphs_limit_in_a_second():
    pace = Notifier().pace

    assert (pace.setting, pace.most) == ("GRAPH_NOTICES_PER_SECOND", 2)


@pytest.mark.parametrize(("status", "code", "said"), [
    (None, "ConnectionError", None),  # out of reach: tried again later, with Graph's own words
    (504, "GatewayTimeout", "Microsoft Graph's answer was lost (GatewayTimeout): the notification may have reached "
                            "these people, so it is not sent again."),
    (None, "Timeout", "Microsoft Graph's answer was lost (Timeout): the notification may have reached these people, "
                      "so it is not sent again."),
    (412, "PreconditionFailed", "Microsoft Graph's activity feed wants a token valid for 45 more minutes, and Entra ID's "
                                "tokens for Crier last less: restore the default token lifetime (60 to 90 minutes) for "
                                "the app registration."),
    (400, "BadRequest", "Microsoft Graph refused the notification (BadRequest: no). If it names the activity type, the "
                        "app in the organisation's catalog predates urgentAnnouncement: upload the current app package "
                        "(python manage.py teams_app_package) in the Teams admin center."),
    (403, "Forbidden", "Microsoft Graph refused (Forbidden): give the app registration the application permission "
                       "TeamsActivity.Send and have an administrator grant consent (docs/going-live.md). no"),
])
def test_each_refusal_says_in_full_what_to_do(status, code, said):
    from bots.notices import _refused

    refused = _refused(GraphError(status=status, code=code, message="no"))

    if said is None:
        assert (refused.code, refused.transient) == ("GraphUnavailable", True)
    else:
        assert refused.message == said and str(refused) == said


def test_the_pace_is_kept_for_the_organisations_tenant_however_its_id_is_written(settings, teams):
    settings.BOT_TENANT_ID = "ABCDEF01-2345-6789-ABCD-EF0123456789"
    tenants = []

    class Pace:
        def wait(self, tenant):
            tenants.append(tenant)

    teams.client.register_users([{"aad_object_id": aad, "installed": True} for aad in [str(uuid.uuid4())]])
    try:
        Notifier(pace=Pace()).send(text="Office closed", aad_object_ids=[str(uuid.uuid4())])
    except NoticeRefused:
        pass  # the emulator knows another tenant: what matters is the pace's key
    assert tenants[0] == "abcdef01-2345-6789-abcd-ef0123456789"
