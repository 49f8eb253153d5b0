"""The Bot Framework wire models, kept behind this one module so the schema library
(``botbuilder-schema`` today, ``microsoft-agents-activity`` one day) can be swapped in one place."""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from botbuilder.schema import Activity, ActivityTypes, Attachment, ChannelAccount, ConversationParameters
from botbuilder.schema.teams import TeamsChannelData, TenantInfo

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def conversation_parameters(*, bot_id: str, bot_name: str, member_id: str, tenant_id: str) -> dict[str, Any]:
    """The body of CreateConversation for a one-to-one chat, in the documented camelCase shape.
    Serialising the model costs about 0.2 ms, so it is done once per bot and tenant."""
    body = copy.deepcopy(_conversation_template(bot_id, bot_name, tenant_id))
    body["members"] = [{"id": member_id}]
    return body


@lru_cache(maxsize=256)
def _conversation_template(bot_id: str, bot_name: str, tenant_id: str) -> dict[str, Any]:
    body = ConversationParameters(
        is_group=False,
        bot=ChannelAccount(id=bot_id, name=bot_name),
        members=[ChannelAccount(id="")],
        tenant_id=tenant_id,
        channel_data=TeamsChannelData(tenant=TenantInfo(id=tenant_id)),
    ).serialize()
    # The library writes "tenantID"; Teams documents "tenantId".
    body.pop("tenantID", None)
    body["tenantId"] = tenant_id
    body["channelData"].pop("onBehalfOf", None)
    return body


def message_activity(
    *, text: str | None = None, card: dict[str, Any] | None = None, summary: str | None = None
) -> dict[str, Any]:
    """A message activity: markdown text, an Adaptive Card, or both."""
    attachments = [Attachment(content_type=ADAPTIVE_CARD_CONTENT_TYPE, content=card)] if card is not None else None
    return Activity(
        type=ActivityTypes.message,
        text=text or None,
        text_format="markdown" if text else None,
        summary=summary or None,
        attachments=attachments,
    ).serialize()


def parse_activity(data: dict[str, Any]) -> Activity:
    """An inbound activity. ``from_dict`` accepts Teams' key casing (``conversation.tenantId``)."""
    return Activity().from_dict(data)
