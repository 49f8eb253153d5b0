from __future__ import annotations

import json

from celery import shared_task

from .connector import ConnectorError, connector
from .schema import message_activity


@shared_task(
    autoretry_for=(ConnectorError,), retry_backoff=2, retry_backoff_max=60, max_retries=5, ignore_result=True
)
def send_reply(service_url: str, conversation_id: str, text: str) -> str:
    """A reply to something the person said. The service URL came from a validated activity."""
    body = json.dumps(message_activity(text=text)).encode()
    return connector.send(service_url=service_url, conversation_id=conversation_id, activity_json=body)
