"""An urgent campaign's pop-up in each person's Teams activity feed, through Microsoft Graph's
``POST /teamwork/sendActivityNotificationToRecipients`` (the application permission ``TeamsActivity.Send``): one
notification to up to 100 people a call, of the activity type the app package declares (``urgentAnnouncement``),
with a sound on their desktop and phone, linking to their chat with the bot, where the message is.

Graph wants a token with at least 45 minutes left (``notice_token_provider`` asks for a new one sooner than other
calls do, and a 412 has it asked for again), answers 202 and reports nothing per person: the notification reaches
those who have the app, which everyone just sent the message has. Its limit is low (a few calls a second for the
app in a tenant): calls are paced at ``GRAPH_NOTICES_PER_SECOND``. Every refusal becomes ``NoticeRefused``, with a
code and, in plain words, what an administrator does about it."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from django.conf import settings

from .app_package import URGENT_ACTIVITY
from .graph import GraphClient, GraphError
from .installs import CREDENTIALS, InstallPace
from .tokens import notice_token_provider

NOTICE_PERMISSION = "TeamsActivity.Send"
MOST_RECIPIENTS = 100  # a call's most, as Graph documents it
GRAPH_NOTICE_LIMIT = 2  # calls a second for the app in a tenant that the activity feed is known to take
RECIPIENT_TYPE = "microsoft.graph.aadUserNotificationRecipient"
# A 429 or a 503 is waited for and tried again twice, briefly (the notifier tries again later); a call whose answer
# was lost is never made again: it may have popped up already, with a sound.
notice_graph = GraphClient(tokens=notice_token_provider, attempts=3, max_wait=10.0, repeat_unanswered=False)
UNANSWERED = "GraphNoAnswer"
TRANSIENT_STATUSES = {429, 500, 503}  # Graph refused the call, or failed it: tried again later


class NoticeRefused(Exception):
    """``code``: GraphCredentialsRefused, NoticeConsentMissing, NoticeNotDeclared, NoticeTokenTooShort, GraphRefused
    (set-up: an administrator fixes it); GraphUnavailable (``transient``: try again later); GraphNoAnswer (the
    answer was lost: the notification may have reached them, so it is not sent again). ``str()`` says what to do."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.transient = code, message, transient


def chat_link() -> str:
    """A Teams deep link to the person's one-to-one chat with the bot, where the urgent message is."""
    return f"{settings.TEAMS_DEEP_LINK_BASE}/l/chat/0/0?users={quote('28:' + settings.BOT_APP_ID, safe=':')}"


def notice_body(*, text: str, aad_object_ids: Sequence[str]) -> dict:
    return {
        "topic": {"source": "text", "value": text, "webUrl": chat_link()},
        "activityType": URGENT_ACTIVITY,
        "previewText": {"content": text},
        "templateParameters": [],
        "recipients": [{"@odata.type": RECIPIENT_TYPE, "userId": str(aad)} for aad in aad_object_ids],
    }


class Notifier:
    def __init__(self, client: GraphClient = notice_graph, pace: InstallPace | None = None) -> None:
        self.client = client
        self.pace = pace or InstallPace(setting="GRAPH_NOTICES_PER_SECOND", most_in_a_second=GRAPH_NOTICE_LIMIT)

    def send(self, *, text: str, aad_object_ids: Sequence[str]) -> None:
        """Sends the notification to these people (1 to ``MOST_RECIPIENTS``), or raises ``NoticeRefused``. A 412
        (the token too near its expiry) has a new token asked for, and the call made once more."""
        if not settings.GRAPH_AUTHORITY:
            raise NoticeRefused(CREDENTIALS, "GRAPH_AUTHORITY is empty: set BOT_TENANT_ID (or GRAPH_AUTHORITY) to the "
                                "organisation's tenant, whose Graph sends urgent notices (docs/configuration.md).")
        if not 1 <= len(aad_object_ids) <= MOST_RECIPIENTS:
            raise ValueError(f"a notification goes to 1 to {MOST_RECIPIENTS} people, not {len(aad_object_ids)}")
        url = self.client.url("/teamwork/sendActivityNotificationToRecipients")
        body = notice_body(text=text, aad_object_ids=aad_object_ids)
        try:
            self._post(url, body)
            return
        except GraphError as error:
            if error.status != 412:
                raise _refused(error) from error
        self.client.tokens.invalidate()  # a token with too little time left: a new one, and the call once more
        try:
            self._post(url, body)
        except GraphError as error:
            raise _refused(error) from error

    def _post(self, url: str, body: dict) -> None:
        self.pace.wait((settings.BOT_TENANT_ID or "").lower())
        self.client.post(url, body, needs=NOTICE_PERMISSION)


def _refused(error: GraphError) -> NoticeRefused:
    if error.status is None and error.code == "Timeout" or error.status in (502, 504):
        return NoticeRefused(UNANSWERED, f"Microsoft Graph's answer was lost ({error.code}): the notification may "
                             "have reached these people, so it is not sent again.")
    if error.status is None or error.status in TRANSIENT_STATUSES:
        return NoticeRefused("GraphUnavailable", error.plain(), transient=True)
    if error.status == 412:
        return NoticeRefused("NoticeTokenTooShort", (
            "Microsoft Graph's activity feed wants a token valid for 45 more minutes, and Entra ID's tokens for Crier "
            "last less: restore the default token lifetime (60 to 90 minutes) for the app registration."))
    if error.status == 401:
        return NoticeRefused(CREDENTIALS, error.plain())
    if error.status == 403:
        return NoticeRefused("NoticeConsentMissing", (
            f"Microsoft Graph refused ({error.code}): give the app registration the application permission "
            f"{NOTICE_PERMISSION} and have an administrator grant consent (docs/going-live.md). {error.message}"))
    if error.status == 400:
        return NoticeRefused("NoticeNotDeclared", (
            f"Microsoft Graph refused the notification ({error.code}: {error.message}). If it names the activity type, "
            f"the app in the organisation's catalog predates {URGENT_ACTIVITY}: upload the current app package "
            "(python manage.py teams_app_package) in the Teams admin center."))
    return NoticeRefused("GraphRefused", error.plain())
