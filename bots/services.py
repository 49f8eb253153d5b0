"""What the bot does with each activity Teams sends it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.card_actions import ACKNOWLEDGE, ANSWER, VERB_ACKNOWLEDGE, VERB_ANSWER, VERB_REFRESH
from campaigns.models import Category, OptOut, Recipient
from campaigns.services import opt_out_record, opt_out_remove_all
from core.channels import Address, Deferred, TransportError
from delivery.acknowledgements import acknowledgement_answer
from delivery.card_views import Answer, card_refresh
from delivery.polls import poll_answer
from delivery.models import Acknowledgement
from delivery.reads import reactions_record, reads_record
from delivery.retry import retry_in

from .models import TeamsAddress, TeamsTeam
from .schema import Activity, message_activity, parse_activity
from .transport import TeamsTransport

logger = logging.getLogger(__name__)

STOP_WORDS = {"stop", "unsubscribe", "opt out", "optout"}
START_WORDS = {"start", "subscribe", "opt in", "optin", "resume"}
REPLY_STOPPED = (
    "You will no longer receive announcements from {bot}. Messages your organisation marks as "
    "mandatory will still reach you. Type **start** to receive announcements again."
)
REPLY_STARTED = "Welcome back: you will receive announcements from {bot} again. Type **stop** at any time to opt out."
REPLY_CATEGORY_STOPPED = "You will no longer receive {category} messages. Type **start** to receive everything again."
REPLY_UNKNOWN_PERSON = (
    "Your organisation's directory does not list you yet, so there is nothing to opt out of. "
    "Ask your communications team if you keep receiving messages."
)
REPLY_ELSEWHERE = "I answer in our one-to-one chat: open {bot} from your apps to opt out or back in."
REPLY_HELP = "I send your organisation's announcements. Type **stop** to opt out, or **start** to opt back in."


def _tenant_of(activity) -> str:
    channel_data = activity.channel_data or {}
    tenant = (channel_data.get("tenant") or {}).get("id") if isinstance(channel_data, dict) else None
    return tenant or (activity.conversation.tenant_id if activity.conversation else "") or ""


def _normalise(text: str | None) -> str:
    text = re.sub(r"<[^>]+>", " ", text or "")  # Teams may wrap text in HTML (mentions)
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def address_record(*, activity, state: str | None) -> TeamsAddress | None:
    """Stores where the person can be reached, from a validated activity."""
    sender = activity.from_property
    aad = getattr(sender, "aad_object_id", None) if sender else None
    if not aad:
        return None
    defaults: dict[str, Any] = {
        "tenant_id": _tenant_of(activity),
        "user_id": sender.id or "",
        "conversation_id": activity.conversation.id if activity.conversation else "",
        "service_url": activity.service_url or "",
    }
    if state:
        defaults["state"] = state
        if state == TeamsAddress.State.INSTALLED:
            defaults["installed_at"] = timezone.now()
    address, _ = TeamsAddress.objects.update_or_create(aad_object_id=aad, defaults=defaults)
    return address


# What the bot does with each kind of activity: one handler per (activity type, action), found by
# ``activity_key``. A new kind of activity (a read receipt, an ``Action.Execute`` invoke, a reaction) is
# one more handler and, where its action is read from a new place, one more line in ``activity_key``.
Handler = Callable[[Activity], list[str]]
READ_RECEIPT = "application/vnd.microsoft.readReceipt"  # an event in a one-to-one chat: what the person read
_HANDLERS: dict[tuple[str, str], Handler] = {}
_ONE_STATEMENT: set[Handler] = set()  # handlers whose work is one statement: atomic without a transaction around it


def handles(activity_type: str, action: str = "", *, one_statement: bool = False) -> Callable[[Handler], Handler]:
    """Registers the decorated function as the handler of activities of that type and action. A handler runs in a
    transaction, unless it says its work is ``one_statement`` (the most frequent activities: receipts, reactions),
    which spares it two round trips to the database."""
    def register(handler: Handler) -> Handler:
        if (activity_type, action) in _HANDLERS:
            raise ValueError(f"two handlers for {activity_type} {action!r}")
        _HANDLERS[(activity_type, action)] = handler
        if one_statement:
            _ONE_STATEMENT.add(handler)
        return handler
    return register


def _in_team(activity: Activity) -> bool:
    """Whether the activity comes from a team's channel or a group chat rather than a one-to-one chat."""
    conversation = activity.conversation
    kind = (conversation.conversation_type or "") if conversation else ""
    return kind not in ("", "personal")


def activity_key(activity: Activity) -> tuple[str, str]:
    """(type, action) of an activity: for conversation and installation updates whether the bot was
    added or removed (``team_…`` in a team), for a message the card action it carries ("" for typed
    text; ``elsewhere`` outside a one-to-one chat)."""
    kind = activity.type or ""
    if _in_team(activity):
        if kind == "message":
            return kind, "elsewhere"
        if kind in ("conversationUpdate", "installationUpdate"):
            kind, action = activity_key_personal(activity)
            return kind, f"team_{action}" if action else "team_changed"
        return kind, ""
    return activity_key_personal(activity)


def activity_key_personal(activity: Activity) -> tuple[str, str]:
    kind = activity.type or ""
    if kind == "conversationUpdate":
        bot_id = f"28:{settings.BOT_APP_ID}"
        if bot_id in [member.id for member in activity.members_added or []]:
            return kind, "add"
        if bot_id in [member.id for member in activity.members_removed or []]:
            return kind, "remove"
        return kind, ""
    if kind == "installationUpdate":
        action = activity.action or ""
        return kind, "add" if action.startswith("add") else "remove" if action.startswith("remove") else ""
    if kind == "message":
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("crier_action")
        return kind, action if isinstance(action, str) else ""
    if kind == "event":
        return kind, activity.name or ""
    return kind, ""


def activity_handle(*, data: dict[str, Any]) -> list[str]:
    """Handles one validated activity; returns the replies to send the person (possibly none), once what it
    recorded has committed (the messaging endpoint calls it outside any transaction: a caller inside one would
    have to send them on its commit)."""
    activity = parse_activity(data)
    kind, action = activity_key(activity)
    # An action no handler knows is the type's plain activity (a message with an unknown card action
    # is answered like typed text).
    handler = _HANDLERS.get((kind, action)) or _HANDLERS.get((kind, ""))
    if handler is None:
        return []
    if handler in _ONE_STATEMENT:
        return handler(activity)
    with transaction.atomic():
        return handler(activity)


@handles("conversationUpdate", "add")
@handles("installationUpdate", "add")
def _installed(activity: Activity) -> list[str]:
    from delivery.welcome import welcome_on_install

    address = address_record(activity=activity, state=TeamsAddress.State.INSTALLED)
    if address is None:
        return []
    # Installing again lifts the opt-out that blocking or removing the bot recorded.
    OptOut.objects.filter(recipient__aad_object_id=address.aad_object_id, source=OptOut.Source.BLOCKED).delete()
    if not _installed_by_crier(address):  # the person's own install: they are welcomed
        welcome_on_install(aad_object_id=str(address.aad_object_id))
    return []


# How long after Crier installed the app for a campaign its installation's activity may arrive.
CRIER_INSTALL_SECONDS = 3600


def _installed_by_crier(address: TeamsAddress) -> bool:
    """Whether Crier installed the app for the person just now (``delivery.installing``): a campaign's message
    follows, and a welcome message besides would be two at once for something they did not ask for."""
    marked = address.installed_by_crier_at
    return marked is not None and (timezone.now() - marked).total_seconds() < CRIER_INSTALL_SECONDS


@handles("conversationUpdate", "remove")
@handles("installationUpdate", "remove")
def _uninstalled(activity: Activity) -> list[str]:
    address_record(activity=activity, state=TeamsAddress.State.UNINSTALLED)
    return []


def _team_record(activity: Activity, *, installed: bool | None) -> None:
    """Remembers a team the bot is in (its name as it is now), or that it was removed from one."""
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = channel_data.get("team") if isinstance(channel_data.get("team"), dict) else {}
    team_id = team.get("id") or (activity.conversation.id if activity.conversation else "")
    if not isinstance(team_id, str) or not team_id.startswith("19:") or len(team_id) > 200:
        logger.warning("a team activity named no team id Crier can keep: %r", str(team_id)[:80])
        return
    tenant = _tenant_of(activity)
    if settings.BOT_TENANT_ID and tenant and tenant.lower() != settings.BOT_TENANT_ID.lower():
        logger.warning("ignored team %s of another tenant (%s)", team_id, tenant[:64])
        return  # the organisation's people are in its own tenant's teams
    defaults: dict[str, Any] = {"tenant_id": tenant[:64]}
    if isinstance(team.get("name"), str) and team["name"]:
        defaults["name"] = team["name"][:300]
    if isinstance(team.get("aadGroupId"), str):
        defaults["aad_group_id"] = team["aadGroupId"][:64]
    if activity.service_url:
        defaults["service_url"] = activity.service_url[:500]
    if installed is not None:
        defaults["installed"] = installed
        if installed:
            defaults["installed_at"] = timezone.now()
    elif not TeamsTeam.objects.filter(team_id=team_id).exists():
        return  # a change in a team Crier was never told it is in
    TeamsTeam.objects.update_or_create(team_id=team_id, defaults=defaults)


@handles("conversationUpdate", "team_add")
@handles("installationUpdate", "team_add")
def _added_to_team(activity: Activity) -> list[str]:
    _team_record(activity, installed=True)
    return []


@handles("conversationUpdate", "team_remove")
@handles("installationUpdate", "team_remove")
def _removed_from_team(activity: Activity) -> list[str]:
    _team_record(activity, installed=False)
    return []


@handles("conversationUpdate", "team_changed")
def _team_changed(activity: Activity) -> list[str]:
    """Renamed, or people joined or left: the name is kept up to date; members are listed when needed."""
    _team_record(activity, installed=None)
    return []


@handles("message", "elsewhere")
def _mentioned_in_team(activity: Activity) -> list[str]:
    """Mentioned in a channel or a group chat: nothing is recorded (the address there is not the person's
    own chat, and an opt-out belongs in it), and the answer points there."""
    return [REPLY_ELSEWHERE.format(bot=settings.BOT_NAME)]


@handles("event", READ_RECEIPT, one_statement=True)
def _read(activity: Activity) -> list[str]:
    """Teams says the person read the bot's messages in their chat up to one of them (delivery.reads)."""
    if _in_team(activity):  # Teams sends none there; one that came would not be about Crier's messages
        return []
    value = activity.value if isinstance(activity.value, dict) else {}
    aad = getattr(activity.from_property, "aad_object_id", None)
    reads_record(aad_object_id=str(aad or ""), last_read=str(value.get("lastReadMessageId") or ""))
    return []


@handles("messageReaction", one_statement=True)
def _reacted(activity: Activity) -> list[str]:
    """The person reacted to one of the bot's messages in their chat, or took a reaction back (delivery.reads).
    Reactions in a team's channel or a group chat are to messages Crier never sends there."""
    if _in_team(activity):
        return []
    aad = getattr(activity.from_property, "aad_object_id", None)
    reactions_record(aad_object_id=str(aad or ""), activity_id=str(activity.reply_to_id or ""),
                     added=[str(r.type or "") for r in activity.reactions_added or []],
                     removed=[str(r.type or "") for r in activity.reactions_removed or []])
    return []


# --- Cards' actions: Universal Actions' invokes, and the Action.Submit fallback -----------------------------------

INVOKE_ACTION = "adaptiveCard/action"  # the invoke an Action.Execute (or a card's refresh) sends
CARD = "application/vnd.microsoft.card.adaptive"
ERROR = "application/vnd.microsoft.error"
Invoker = Callable[[Activity, dict[str, Any]], dict[str, Any]]
PRESSES = {VERB_ACKNOWLEDGE, VERB_ANSWER}  # verbs a person's press sends, never Teams by itself
_INVOKES: dict[str, Invoker] = {}  # by the Action.Execute's verb


def answers(verb: str) -> Callable[[Invoker], Invoker]:
    """Registers the decorated function as the answer to the ``Action.Execute`` invokes of that verb."""
    def register(invoker: Invoker) -> Invoker:
        if verb in _INVOKES:
            raise ValueError(f"two answers to {verb!r}")
        _INVOKES[verb] = invoker
        return invoker
    return register


def invoke_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "type": ERROR, "value": {"code": code, "message": message}}


def invoke_handle(*, data: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """Answers one validated invoke: (HTTP status, body). An ``adaptiveCard/action`` is answered with HTTP 200 and,
    in the body, the card the person now sees or an error with its own status (as Universal Actions have it);
    other invokes are not Crier's (501, as the Bot Framework answers them)."""
    activity = parse_activity(data)
    if (activity.name or "") != INVOKE_ACTION:
        return 501, None
    value = activity.value if isinstance(activity.value, dict) else {}
    action = value.get("action") if isinstance(value.get("action"), dict) else {}
    invoker = _INVOKES.get(action.get("verb")) if action.get("type") == "Action.Execute" else None
    if invoker is None:
        return 200, invoke_error(400, "NotSupported", "Crier does not know this button.")
    if _in_team(activity):  # Crier's cards go to one-to-one chats only
        return 200, invoke_error(403, "Forbidden", "Crier answers its buttons in your one-to-one chat with it.")
    if action.get("verb") in PRESSES and value.get("trigger") == "automatic":  # as a refresh: nobody pressed it
        return 200, invoke_error(400, "BadRequest", "This button answers a press only.")
    return 200, invoker(activity, action.get("data") if isinstance(action.get("data"), dict) else {})


def _card_answer(answer: Answer) -> dict[str, Any]:
    if answer.card is None:
        return invoke_error(answer.status, answer.code, answer.message)
    return {"statusCode": 200, "type": CARD, "value": answer.card}


def _aad(activity: Activity) -> str:
    """The sender's Entra object id: the person, as Teams' token vouches for the activity."""
    return str(getattr(activity.from_property, "aad_object_id", None) or "")


@answers(VERB_ACKNOWLEDGE)
def _acknowledge_pressed(activity: Activity, data: dict[str, Any]) -> dict[str, Any]:
    return _card_answer(acknowledgement_answer(aad_object_id=_aad(activity), data=data,
                                               reply_to=activity.reply_to_id or None))


@answers(VERB_ANSWER)
def _poll_answered(activity: Activity, data: dict[str, Any]) -> dict[str, Any]:
    return _card_answer(poll_answer(aad_object_id=_aad(activity), data=data, reply_to=activity.reply_to_id or None))


@answers(VERB_REFRESH)
def _refreshed(activity: Activity, data: dict[str, Any]) -> dict[str, Any]:
    # A refresh records nothing and shows the person only their own card: whichever message Teams says it is for.
    return _card_answer(card_refresh(aad_object_id=_aad(activity), data=data, reply_to=None))


REPLY_ACKNOWLEDGED = "Thank you: your acknowledgement is recorded ({when} UTC)."
REPLY_ANSWERED = "Thank you: your answer is recorded."
REPLY_CHANGED = "This message was changed since it reached you: read it again as it is now, and acknowledge it there."
REPLY_CLOSED = "This poll is closed: your answer was not recorded."


@handles("message", ACKNOWLEDGE)
def _acknowledge_submitted(activity: Activity) -> list[str]:
    """The acknowledgement button on a Teams too old for Universal Actions: its fallback, an Action.Submit, arrives
    as a message with the card's data. It records the same, and answers in words (the card stays as it is)."""
    answer = acknowledgement_answer(aad_object_id=_aad(activity), data=activity.value,
                                    via=Acknowledgement.Via.FALLBACK, reply_to=activity.reply_to_id or None)
    if answer.acknowledged_at is None:
        return [answer.message or REPLY_CHANGED]
    return [REPLY_ACKNOWLEDGED.format(when=answer.acknowledged_at.strftime("%-d %B %Y, %H:%M"))]


@handles("message", ANSWER)
def _answer_submitted(activity: Activity) -> list[str]:
    """A poll's answer from a Teams too old for Universal Actions (the button's Action.Submit fallback, with the
    card's choice in its data): recorded the same, answered in words."""
    answer = poll_answer(aad_object_id=_aad(activity), data=activity.value, reply_to=activity.reply_to_id or None)
    if answer.status != 200:
        return [answer.message]
    return [REPLY_CLOSED if answer.closed else REPLY_ANSWERED]


def _sender(activity: Activity) -> Recipient | None:
    """The person who wrote, once their address is recorded (writing to the bot means it is installed)."""
    address_record(activity=activity, state=TeamsAddress.State.INSTALLED)
    aad = getattr(activity.from_property, "aad_object_id", None)
    return Recipient.objects.filter(aad_object_id=aad).first() if aad else None


@handles("message", "opt_out")
def _opt_out_pressed(activity: Activity) -> list[str]:
    """The opt-out button of a card: out of the message's category, or of everything."""
    recipient = _sender(activity)
    if recipient is None:
        return [REPLY_UNKNOWN_PERSON]
    category = Category.objects.filter(slug=activity.value.get("category") or "").first()
    if category is None or category.mandatory:
        opt_out_record(recipient=recipient, source=OptOut.Source.CARD_BUTTON)
        return [REPLY_STOPPED.format(bot=settings.BOT_NAME)]
    opt_out_record(recipient=recipient, category=category, source=OptOut.Source.CARD_BUTTON)
    return [REPLY_CATEGORY_STOPPED.format(category=category.name)]


@handles("message")
def _typed(activity: Activity) -> list[str]:
    """A typed message: stop, start, or anything else (help)."""
    recipient = _sender(activity)
    bot = settings.BOT_NAME
    word = _normalise(activity.text)
    if word in STOP_WORDS:
        if recipient is None:
            return [REPLY_UNKNOWN_PERSON]
        opt_out_record(recipient=recipient, source=OptOut.Source.TYPED_STOP)
        return [REPLY_STOPPED.format(bot=bot)]
    if word in START_WORDS:
        if recipient is not None:
            opt_out_remove_all(recipient=recipient)
        return [REPLY_STARTED.format(bot=bot)]
    return [REPLY_HELP]


_transport = TeamsTransport()


@dataclass(frozen=True)
class ReplyOutcome:
    status: str  # "sent", "failed" or "retrying"
    retry_in: float | None = None  # seconds, when retrying
    attempt: int = 1  # the attempt to make next, when retrying


def reply_send(
    *, service_url: str, conversation_id: str, tenant_id: str, text: str, attempt: int = 1,
    transport: TeamsTransport | None = None,
) -> ReplyOutcome:
    """Sends one reply, paced like every call to Teams, and says whether and when to try again:
    by the same table as a campaign's sends (``bots.transport.classify``, ``delivery.retry``).
    A conversation at its own limit costs no attempt."""
    address = Address(
        member_id="", tenant_id=tenant_id or settings.BOT_TENANT_ID, service_url=service_url,
        conversation_id=conversation_id,
    )
    body = json.dumps(message_activity(text=text)).encode()
    try:
        (transport or _transport).reply(address=address, activity_json=body)
    except Deferred as deferred:
        return ReplyOutcome("retrying", retry_in=deferred.wait, attempt=attempt)
    except TransportError as error:
        delay = retry_in(attempt=attempt, error=error)
        if delay is None:
            logger.info("reply not sent (attempt %s): %s %s", attempt, error.status, error.code)
            return ReplyOutcome("failed")
        return ReplyOutcome("retrying", retry_in=delay, attempt=attempt + 1)
    return ReplyOutcome("sent")


def activity_tenant(*, data: dict[str, Any]) -> str:
    """The tenant an inbound activity came from (its replies are paced in that tenant)."""
    channel_data = data.get("channelData")
    tenant = (channel_data.get("tenant") or {}) if isinstance(channel_data, dict) else {}
    conversation = data.get("conversation") or {}
    found = (tenant.get("id") if isinstance(tenant, dict) else None) or (
        conversation.get("tenantId") if isinstance(conversation, dict) else None
    )
    return found if isinstance(found, str) else ""
