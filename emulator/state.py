"""What the emulator remembers: users, their one-to-one conversations, the messages the bot sent (in
``messages.MessageLog``), the teams, and the counters behind ``/_emulator/stats``.

Everything lives in memory and is touched only from the event loop, so there are no locks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import secrets
import uuid
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .cards import first_card, skeleton
from .limits import RetryAfterTracker
from .messages import Message, MessageLog, digest_of

_USER_ID_CHECK = b"crier-emulator-user"
_USER_ID_MASK = hashlib.sha256(b"crier-emulator-user-mask").digest()[:16]


def iso(timestamp: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, like Teams writes them."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def normalize_aad(value: Any) -> str | None:
    """The canonical (lower-case, hyphenated) form of an Entra object id, or None if it is not a GUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def _mask(raw: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(raw, _USER_ID_MASK))


def user_id_for(aad_object_id: str) -> str:
    """The user's pairwise ``29:`` id: opaque, deterministic, and decodable by ``aad_from_user_id`` (so
    an id the bot kept from before a reset still finds its user)."""
    raw = uuid.UUID(aad_object_id).bytes
    check = hashlib.sha256(_USER_ID_CHECK + raw).digest()[:8]
    return "29:1" + base64.urlsafe_b64encode(_mask(raw) + check).rstrip(b"=").decode("ascii")


def aad_from_user_id(user_id: str) -> str | None:
    if not user_id.startswith("29:1"):
        return None
    text = user_id[4:]
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    raw, check = _mask(data[:16]), data[16:]
    if len(raw) != 16 or check != hashlib.sha256(_USER_ID_CHECK + raw).digest()[:8]:
        return None
    return str(uuid.UUID(bytes=raw))


INVOKE_OUTCOMES = ("card", "message", "error", "unreachable")
LATENCIES_KEPT = 50_000


def latency_summary(values: Iterable[float]) -> dict[str, Any]:
    """Count, median, 99th percentile and maximum (nearest rank) of latencies in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p99": None, "max": None}

    def rank(percent: int) -> float:
        return round(ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)], 2)

    return {"count": len(ordered), "p50": rank(50), "p99": rank(99), "max": round(ordered[-1], 2)}


class Latencies:
    """The bot's answer times to invokes: all of them counted, the latest ``LATENCIES_KEPT`` kept for the
    percentiles."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: deque[float] = deque(maxlen=LATENCIES_KEPT)

    def add(self, milliseconds: float) -> None:
        self.count += 1
        self.samples.append(milliseconds)

    def summary(self) -> dict[str, Any]:
        return {**latency_summary(self.samples), "count": self.count}


class User:
    __slots__ = (
        "index", "aad_object_id", "user_id", "name", "tenant_id", "installed", "blocked", "uninstalled",
        "conversation_id", "conversation_index", "messages", "via_team", "chat_id",
    )

    def __init__(
        self, index: int, aad_object_id: str, name: str, tenant_id: str, installed: bool, blocked: bool
    ) -> None:
        self.index = index  # position in Store.user_list
        self.aad_object_id = aad_object_id
        self.user_id = user_id_for(aad_object_id)
        self.name = name
        self.tenant_id = tenant_id
        self.installed = installed
        self.blocked = blocked
        self.uninstalled = False  # set by an uninstall; sends then answer 403 MessageWritesBlocked
        # Set when the bot, installed in a team of the user's but not for the user, made the user's chat:
        # sends go through while a team of theirs still has the bot.
        self.via_team = False
        self.conversation_id: str | None = None
        self.conversation_index = -1  # position of conversation_id in Store.conversation_ids
        # Graph's id for the same chat (19:...@unq.gbl.spaces), once Graph gave it: another name for the live
        # conversation, in Store.conversations beside conversation_id.
        self.chat_id: str | None = None
        self.messages = array("q")  # rows in the message log, oldest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "aad_object_id": self.aad_object_id,
            "user_id": self.user_id,
            "name": self.name,
            "tenant_id": self.tenant_id,
            "installed": self.installed,
            "blocked": self.blocked,
            "uninstalled": self.uninstalled,
            "via_team": self.via_team,
            "conversation_id": self.conversation_id,
            "chat_id": self.chat_id,
            "message_count": len(self.messages),
        }


@dataclass
class Team:
    id: str  # 19:...@thread.tacv2, the team's General channel too
    name: str
    aad_group_id: str
    members: dict[str, None] = field(default_factory=dict)  # aad object ids, in order (a dict: an ordered set)
    bot_installed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "aad_group_id": self.aad_group_id,
                "members": list(self.members), "bot_installed": self.bot_installed}


class Store:
    """Users, conversations, messages and counters. ``reset`` forgets all of them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, User] = {}  # by aad object id
        self.user_list: list[User] = []
        self.users_by_id: dict[str, User] = {}  # by 29: id
        self.conversations: dict[str, User] = {}  # live conversation id (or its chat id) -> its user
        self.conversation_ids: list[str] = []  # every conversation ever made, deleted ones too
        self.teams: dict[str, Team] = {}  # by team id
        self.log = MessageLog()
        # Hashes of (user, activity digest) already accepted, for duplicate detection: one int per
        # message is far smaller than a set of digests per user.
        self._seen: set[int] = set()
        self.requests = 0
        self.tokens_issued = 0
        self.read_receipts = 0  # read receipts sent to the bot
        self.throttled = {"app": 0, "conversation": 0, "create": 0}
        # Of the "app" refusals, those over the limit by the moments their caller made the calls too.
        self.app_throttled_when_made = 0
        self.duplicates = 0
        self.max_messages_per_user = 0
        self.retry_after = RetryAfterTracker()
        self.invokes = dict.fromkeys(INVOKE_OUTCOMES, 0)  # adaptiveCard/action invokes sent, by the bot's answer
        self.invoke_latency = Latencies()  # of those the bot answered
        self.notes: dict[str, str] = {}  # per person: what the bot answered, shown once on the inbox page

    # Users -------------------------------------------------------------------------------------

    def upsert_user(
        self, aad_object_id: str, *, name: str | None = None, tenant_id: str,
        installed: bool | None = None, blocked: bool | None = None,
    ) -> User:
        """Registers a user, or updates the fields given for one already known."""
        user = self.users.get(aad_object_id)
        if user is None:
            user = User(
                len(self.user_list), aad_object_id, name or f"User {aad_object_id[:8]}", tenant_id,
                True if installed is None else installed, bool(blocked),
            )
            self.users[aad_object_id] = user
            self.user_list.append(user)
            self.users_by_id[user.user_id] = user
            return user
        if name is not None:
            user.name = name
        user.tenant_id = tenant_id
        if installed is not None:
            user.installed = installed
            if installed:
                user.uninstalled = False
        if blocked is not None:
            user.blocked = blocked
        return user

    def find_user(self, member_id: str) -> User | None:
        """A user by ``29:`` id or by Entra object id."""
        if member_id.startswith("29:"):
            return self.users_by_id.get(member_id)
        aad = normalize_aad(member_id)
        return self.users.get(aad) if aad else None

    def in_team_with_the_bot(self, aad_object_id: str) -> bool:
        """Whether the user is a member of a team the bot is installed in."""
        return any(team.bot_installed and aad_object_id in team.members for team in self.teams.values())

    # Conversations -----------------------------------------------------------------------------

    @property
    def conversations_created(self) -> int:
        return len(self.conversation_ids)

    def conversation_for(self, user: User) -> str:
        """The user's one-to-one conversation id, made on first use (and again after a deleted chat)."""
        if user.conversation_id is None:
            user.conversation_id = "a:1" + secrets.token_urlsafe(48)
            user.conversation_index = len(self.conversation_ids)
            self.conversation_ids.append(user.conversation_id)
            self.conversations[user.conversation_id] = user
            if user.chat_id is not None:
                self.conversations[user.chat_id] = user
        return user.conversation_id

    def open_chat(self, user: User, chat_id: str) -> str:
        """Names the user's one-to-one conversation (made if need be) by Graph's chat id too: sends through
        either reach the same chat, for as long as it lives."""
        self.conversation_for(user)
        user.chat_id = chat_id
        self.conversations[chat_id] = user
        return chat_id

    def thread_of(self, conversation_id: str) -> str:
        """The conversation a live id names: a chat id stands for its conversation id."""
        user = self.conversations.get(conversation_id)
        return user.conversation_id if user is not None and user.conversation_id else conversation_id

    def delete_chat(self, user: User) -> None:
        if user.conversation_id is not None:
            self.conversations.pop(user.conversation_id, None)
            if user.chat_id is not None:
                self.conversations.pop(user.chat_id, None)
            user.conversation_id = None
            user.conversation_index = -1

    # Messages ----------------------------------------------------------------------------------

    def record(self, user: User, activity: dict[str, Any], keep_body: bool) -> str:
        """Records a message sent to the user's current conversation; returns its activity id."""
        digest = digest_of(activity)
        key = hash((user.aad_object_id, digest))
        if key in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(key)
        if not keep_body and user.messages:
            self._forget_skeleton(user.messages[-1])
        seq = self.log.append(user.index, user.conversation_index, activity, digest, keep_body)
        if not keep_body:
            self._keep_skeleton(seq, activity)
        user.messages.append(seq)
        if len(user.messages) > self.max_messages_per_user:
            self.max_messages_per_user = len(user.messages)
        return self.log.activity_id(seq)

    def find_message(self, conversation_id: str, activity_id: str) -> int | None:
        """The row of a message sent to this conversation (by either of its ids), or None."""
        seq = self.log.seq_of(activity_id)
        if seq is None or self.conversation_ids[self.log.conversation_index[seq]] != self.thread_of(conversation_id):
            return None
        return seq

    def update_message(self, seq: int, activity: dict[str, Any], keep_body: bool) -> None:
        self.log.replace(seq, activity, digest_of(activity), keep_body)
        self._forget_skeleton(seq)
        if not keep_body and self.is_latest(seq):
            self._keep_skeleton(seq, activity)

    def is_latest(self, seq: int) -> bool:
        """Whether the message is the latest the bot sent its person."""
        messages = self.user_list[self.log.user_index[seq]].messages
        return bool(messages) and messages[-1] == seq

    def _keep_skeleton(self, seq: int, activity: dict[str, Any]) -> None:
        """Without bodies, the buttons of a person's latest card are kept, for the person to press them."""
        found = first_card(activity)
        kept = skeleton(found[1]) if found else None
        if kept is not None:
            self.log.skeletons[seq] = kept

    def _forget_skeleton(self, seq: int) -> None:
        self.log.skeletons.pop(seq, None)
        if seq not in self.log.activities:
            self.log.answer_cards.pop(seq, None)

    def answer_card(self, seq: int, card: dict[str, Any]) -> None:
        """The bot answered an invoke on the message with ``card``: the person sees it in place of the message's
        card (without bodies, only its skeleton is kept, and only for the person's latest message)."""
        self.log.answered[seq] = self.log.answered.get(seq, 0) + 1
        if seq in self.log.activities:
            self.log.answer_cards[seq] = card
            return
        kept = skeleton(card) if self.is_latest(seq) else None
        if kept is None:
            self.log.answer_cards.pop(seq, None)
            self.log.skeletons.pop(seq, None)  # the card the person sees has no buttons left
        else:
            self.log.answer_cards[seq] = kept

    def count_invoke(self, outcome: str, milliseconds: float | None) -> None:
        self.invokes[outcome] += 1
        if milliseconds is not None:
            self.invoke_latency.add(milliseconds)

    def delete_message(self, seq: int) -> None:
        self.log.deleted.add(seq)

    def message(self, seq: int) -> Message:
        return self.log.view(seq, self.conversation_ids)

    def user_messages(self, user: User, newest_first: int | None = None) -> list[Message]:
        """All of a user's messages oldest first, or only the ``newest_first`` latest, newest first."""
        seqs = user.messages if newest_first is None else user.messages[-newest_first:][::-1]
        return [self.message(seq) for seq in seqs]

    def query_messages(self, user: User | None, since: float | None, limit: int) -> list[Message]:
        """Oldest first; at most ``limit`` messages received at or after ``since``."""
        seqs: array[int] | range = user.messages if user is not None else range(len(self.log))
        start = self.log.first_at_or_after(seqs, since) if since is not None else 0
        return [self.message(seq) for seq in seqs[start : start + limit]]

    def message_dict(self, message: Message) -> dict[str, Any]:
        user = self.user_list[message.user_index]
        return {
            "activity_id": message.activity_id,
            "conversation_id": message.conversation_id,
            "aad_object_id": user.aad_object_id,
            "user_id": user.user_id,
            "received_at": iso(message.received_at),
            "activity": message.activity,
            "sha256": message.digest.hex(),
            "updated": message.updated,
            "deleted": message.deleted,
            "card": message.card,
            "answered": message.answered,
        }

    def stats(self, fault_counts: dict[str, int]) -> dict[str, Any]:
        count = len(self.log)
        return {
            "messages": count,
            "conversations_created": self.conversations_created,
            "requests": self.requests,
            "tokens_issued": self.tokens_issued,
            "read_receipts": self.read_receipts,
            "invokes": {"sent": sum(self.invokes.values()), **self.invokes},
            "invoke_ms": self.invoke_latency.summary(),
            "throttled": dict(self.throttled),
            "app_throttled_when_made": self.app_throttled_when_made,
            "faults": dict(fault_counts),
            "duplicates": self.duplicates,
            "early_calls": self.retry_after.early_calls,
            "in_flight_at_retry_after": self.retry_after.in_flight_calls,
            "early_call_samples": list(self.retry_after.early_samples),
            "users": len(self.users),
            "max_messages_per_user": self.max_messages_per_user,
            "first_message_at": iso(self.log.received_at[0]) if count else None,
            "last_message_at": iso(self.log.received_at[-1]) if count else None,
        }
