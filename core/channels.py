"""The seam between delivery and the channel that carries a message to a person.

Delivery decides who is sent what and when, and records what happened; a channel (Teams today, in
``bots/``) knows its own wire format, its limits and what each of its answers means. What delivery's
rules need from a channel is named here, so that they read no Teams code, status or format:

* ``Content``: what a message says, before any channel's format;
* ``Address``: where the channel reaches one person;
* ``Channel``: wrap content into the channel's format, and send, edit, delete or reply;
* what a call can end in: ``SendResult``, or one of ``TransportError`` (the channel answered no, or
  did not answer), ``Stopped`` (the campaign was paused or cancelled before the call) and
  ``Deferred`` (the channel's limits say try again later; nothing was called).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Content:
    """A message as its author wrote it: markdown text, or an Adaptive Card with an optional summary
    (the text a notification shows). Placeholders may still be in it."""

    text: str | None = None
    card: dict[str, Any] | None = None
    summary: str | None = None


@dataclass
class Address:
    member_id: str  # the person's id on the channel (for Teams, the 29: id, or the Entra object id)
    tenant_id: str
    service_url: str  # where the channel takes calls for this person
    conversation_id: str = ""  # the one-to-one conversation, once there is one


@dataclass
class SendResult:
    activity_id: str
    conversation_id: str


class TransportError(Exception):
    """A call the channel refused or did not answer, with what it means for delivery: whether another
    attempt could succeed (``permanent``), when (``retry_after``), whether the person shut the channel
    to Crier (``opt_out``), and whether it says something about this one person only (``personal``)
    rather than about the campaign or the bot."""

    def __init__(
        self,
        *,
        code: str,
        message: str,
        status: int | None,
        permanent: bool,
        retry_after: float | None = None,
        opt_out: bool = False,
        personal: bool = False,
        conversation_id: str = "",
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after
        self.opt_out = opt_out
        self.personal = personal
        # A conversation created during the failed call, worth keeping for the next attempt.
        self.conversation_id = conversation_id


@dataclass(frozen=True)
class Deferred(Exception):
    """The channel's limits say wait: try this call again in ``wait`` seconds (nothing was called)."""

    wait: float


@dataclass(frozen=True)
class Stopped(Exception):
    """The campaign was paused or cancelled: make no more calls for it."""

    reason: str


class Channel(Protocol):
    """What delivery asks of a channel. Every call may raise ``TransportError``; ``send`` may also raise
    ``Stopped`` or ``Deferred`` (and the others ``Deferred``)."""

    def wrap(self, content: Content) -> dict[str, Any]:
        """The message in the channel's own format, as a JSON-ready dict."""

    def send(self, *, address: Address, activity_json: bytes, campaign_id: int | None = None) -> SendResult:
        """Delivers a wrapped message to one person, opening the conversation first if there is none."""

    def update(self, *, address: Address, activity_id: str, activity_json: bytes) -> None:
        """Replaces a message sent before."""

    def delete(self, *, address: Address, activity_id: str) -> None:
        """Takes back a message sent before."""

    def reply(self, *, address: Address, activity_json: bytes) -> str:
        """Answers in a conversation the person just wrote in."""
