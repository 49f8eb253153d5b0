"""The log of messages the bot sent, stored column by column to stay small.

A message is a row number (its ``seq``); its fields live in typed arrays, so a message without its body
costs about 60 bytes here, plus 8 in its user's index and ~70 in the duplicate set. ``Message`` is a
read-only view made on demand for the control API and the pages.

A person may see another card than the bot sent: the card the bot answered an ``Action.Execute`` with takes
the place of the message's card for that person, until the bot updates the message. Without bodies, only the
skeleton of each person's latest card is kept (``cards.skeleton``): enough to press its buttons.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from dataclasses import dataclass
from typing import Any

from .cards import first_card, with_card

DIGEST_SIZE = 32


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_of(activity: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(activity)).digest()


@dataclass(frozen=True)
class Message:
    """One recorded message, as read from the log."""

    activity_id: str
    conversation_id: str
    user_index: int
    received_at: float
    activity: dict[str, Any] | None  # None when bodies are not kept
    digest: bytes  # SHA-256 of the canonical JSON of the (latest) activity
    updated: int
    deleted: bool
    answered: int = 0  # times the bot answered an invoke on the message with a card
    answer_card: dict[str, Any] | None = None  # the latest of those cards (None without the body)

    @property
    def card(self) -> dict[str, Any] | None:
        """The Adaptive Card the person sees now: the bot's latest answer, else the message's first card."""
        if self.activity is None:
            return None
        if self.answer_card is not None:
            return self.answer_card
        found = first_card(self.activity)
        return found[1] if found else None

    @property
    def seen_activity(self) -> dict[str, Any] | None:
        """The message as the person sees it: its first card replaced by the bot's latest answer, if any."""
        if self.activity is None or self.answer_card is None:
            return self.activity
        return with_card(self.activity, self.answer_card)


class MessageLog:
    def __init__(self) -> None:
        # Activity ids are this base plus the row number: unique across resets, found without an index.
        self.id_base = int(time.time() * 1000) * 1_000_000
        self.received_at = array("d")
        self.user_index = array("q")
        self.conversation_index = array("q")
        self.digests = bytearray()
        self.activities: dict[int, dict[str, Any]] = {}  # only for messages whose body is kept
        self.updated: dict[int, int] = {}
        self.deleted: set[int] = set()
        self.answered: dict[int, int] = {}  # invokes the bot answered with a card, per message
        # The card the person sees in place of the message's own (a skeleton when the body is not kept).
        self.answer_cards: dict[int, dict[str, Any]] = {}
        self.skeletons: dict[int, dict[str, Any]] = {}  # without bodies: each person's latest card, its buttons

    def __len__(self) -> int:
        return len(self.received_at)

    def append(
        self, user_index: int, conversation_index: int, activity: dict[str, Any], digest: bytes, keep_body: bool
    ) -> int:
        seq = len(self.received_at)
        self.received_at.append(time.time())
        self.user_index.append(user_index)
        self.conversation_index.append(conversation_index)
        self.digests += digest
        if keep_body:
            self.activities[seq] = activity
        return seq

    def activity_id(self, seq: int) -> str:
        return str(self.id_base + seq)

    def seq_of(self, activity_id: str) -> int | None:
        """The row of an activity id, or None when it is not one of ours."""
        try:
            seq = int(activity_id) - self.id_base
        except ValueError:
            return None
        return seq if 0 <= seq < len(self.received_at) else None

    def replace(self, seq: int, activity: dict[str, Any], digest: bytes, keep_body: bool) -> None:
        self.digests[seq * DIGEST_SIZE : (seq + 1) * DIGEST_SIZE] = digest
        if keep_body:
            self.activities[seq] = activity
        else:
            self.activities.pop(seq, None)
        self.updated[seq] = self.updated.get(seq, 0) + 1
        self.answer_cards.pop(seq, None)  # the bot's new version is what everyone sees now

    def actionable_card(self, seq: int) -> dict[str, Any] | None:
        """The card (or its skeleton) whose buttons the person can press on the message, if known."""
        if seq in self.answer_cards:
            return self.answer_cards[seq]
        if seq in self.activities:
            found = first_card(self.activities[seq])
            return found[1] if found else None
        return self.skeletons.get(seq)

    def first_at_or_after(self, seqs: array[int] | range, since: float) -> int:
        """Position in ``seqs`` (rows in time order) of the first message received at or after ``since``."""
        lo, hi = 0, len(seqs)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.received_at[seqs[mid]] < since:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def view(self, seq: int, conversation_ids: list[str]) -> Message:
        return Message(
            activity_id=self.activity_id(seq),
            conversation_id=conversation_ids[self.conversation_index[seq]],
            user_index=self.user_index[seq],
            received_at=self.received_at[seq],
            activity=self.activities.get(seq),
            digest=bytes(self.digests[seq * DIGEST_SIZE : (seq + 1) * DIGEST_SIZE]),
            updated=self.updated.get(seq, 0),
            deleted=seq in self.deleted,
            answered=self.answered.get(seq, 0),
            answer_card=self.answer_cards.get(seq) if seq in self.activities else None,
        )
