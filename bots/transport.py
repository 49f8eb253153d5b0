"""The Teams transport: reach one person, and decide what each Teams answer means.

Every decision about which answers are permanent lives in ``classify`` below, following
Microsoft's table of Bot Connector status codes (docs/architecture.md, "What each Teams answer leads to").
"""

from __future__ import annotations

import redis

from core.channels import Address, Content, SendResult, TransportError

from .connector import BotConnectorClient, ConnectorError, connector
from .pacing import Pacer, pacer
from .schema import message_activity

# The user blocked the bot or removed it: Teams will refuse until they come back. An opt-out signal.
BLOCKED_CODES = {"ConversationBlockedByUser", "MessageWritesBlocked", "209"}
# Microsoft lists these as worth retrying; everything else is not (500 included, per its table).
RETRYABLE_STATUSES = {412, 429, 502, 503, 504}
# Refusals that say something about one person, not about the campaign or the bot: they never count
# toward pausing a campaign.
PERSONAL_CODES = BLOCKED_CODES | {"ForbiddenOperationException", "BotNotInConversationRoster"}


def classify(error: ConnectorError, *, conversation_id: str = "") -> TransportError:
    status = error.status
    if status is None:
        # Timeout or broken connection: the call may have gone through. Retry (the policy for this
        # ambiguous case is in docs/architecture.md, "Delivery guarantees").
        permanent = False
    else:
        permanent = status not in RETRYABLE_STATUSES
    opt_out = status == 403 and error.code in BLOCKED_CODES
    return TransportError(
        code=error.code,
        message=error.message,
        status=status,
        permanent=permanent,
        retry_after=error.retry_after,
        opt_out=opt_out,
        personal=error.code in PERSONAL_CODES,
        conversation_id=conversation_id,
    )


class TeamsTransport:
    """The Teams channel (``core.channels.Channel``): messages as Bot Framework activities, sent through
    the Bot Connector at the pace Teams publishes."""

    def __init__(self, client: BotConnectorClient = connector, pacing: Pacer = pacer) -> None:
        self.client = client
        self.pacing = pacing

    @staticmethod
    def wrap(content: Content) -> dict:
        """A message activity: the markdown text, or the Adaptive Card with its summary."""
        return message_activity(text=content.text, card=content.card, summary=content.summary)

    def _paced(self, address: Address, thread: str, campaign_id: int | None, call, **arguments):
        """Waits for this call's slot, makes ``call(**arguments)``, and tells every worker when Teams
        said 429. Raises ``Stopped`` (the campaign was paused or cancelled) or ``Deferred`` (the call
        must wait longer than a worker should sleep); neither has called Teams."""
        # The token first: fetched between the slot and the call, it would let the call reach Teams
        # after a Retry-After that other workers had already heard of.
        self.client.prepare()
        try:
            self.pacing.acquire(tenant_id=address.tenant_id, thread=thread, campaign_id=campaign_id)
        except redis.RedisError as exc:
            raise ConnectorError(status=None, code="PacerUnavailable", message=str(exc)[:200]) from exc
        try:
            return call(**arguments)
        except ConnectorError as exc:
            if exc.status == 429:
                try:
                    self.pacing.throttled(tenant_id=address.tenant_id, retry_after=exc.retry_after)
                except redis.RedisError:  # this process still waits (Pacer.heard); the 429 is recorded
                    pass
            raise

    def send(self, *, address: Address, activity_json: bytes, campaign_id: int | None = None) -> SendResult:
        conversation_id = address.conversation_id
        stored = bool(conversation_id)
        for _ in range(2):
            if not conversation_id:
                try:
                    conversation_id = self._paced(
                        address,
                        f"user:{address.member_id}",
                        campaign_id,
                        self.client.create_conversation,
                        service_url=address.service_url,
                        tenant_id=address.tenant_id,
                        member_id=address.member_id,
                    )
                except ConnectorError as exc:
                    raise classify(exc) from exc
            try:
                activity_id = self._paced(
                    address,
                    f"conversation:{conversation_id}",
                    campaign_id,
                    self.client.send,
                    service_url=address.service_url,
                    conversation_id=conversation_id,
                    activity_json=activity_json,
                )
                return SendResult(activity_id=activity_id, conversation_id=conversation_id)
            except ConnectorError as exc:
                if exc.status == 404 and exc.code == "ConversationNotFound" and stored:
                    # The person deleted the chat: the stored id is stale. Create a new one, once.
                    conversation_id, stored = "", False
                    continue
                raise classify(exc, conversation_id=conversation_id) from exc
        raise AssertionError("unreachable")

    # Edits and recalls of a sent message, and the bot's replies: paced exactly as sends are (the
    # tenant's slot, the conversation's own limits, a 429's Retry-After told to every worker), but
    # never stopped by a campaign's flag: the campaign is over, and a cancel must not stop its recall.

    def update(self, *, address: Address, activity_id: str, activity_json: bytes) -> None:
        self._existing(address, self.client.update, activity_id=activity_id, activity_json=activity_json)

    def delete(self, *, address: Address, activity_id: str) -> None:
        self._existing(address, self.client.delete, activity_id=activity_id)

    def members_page(self, *, address: Address, continuation: str, page_size: int) -> dict:
        """One page of the members of the team ``address.conversation_id``, paced like every call to Teams."""
        return self._paced(
            address, f"conversation:{address.conversation_id}", None, self.client.paged_members,
            service_url=address.service_url, conversation_id=address.conversation_id, continuation=continuation,
            page_size=page_size,
        )

    def reply(self, *, address: Address, activity_json: bytes) -> str:
        """The bot's answer in a conversation the person just wrote in: paced as edits are."""
        return self._existing(address, self.client.send, activity_json=activity_json)

    def _existing(self, address: Address, call, **arguments):
        try:
            return self._paced(
                address, f"conversation:{address.conversation_id}", None, call,
                service_url=address.service_url, conversation_id=address.conversation_id, **arguments,
            )
        except ConnectorError as exc:
            raise classify(exc, conversation_id=address.conversation_id) from exc
