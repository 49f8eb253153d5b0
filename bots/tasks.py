from __future__ import annotations

from celery import shared_task

from .services import reply_send


@shared_task(ignore_result=True)
def send_reply(service_url: str, conversation_id: str, text: str, tenant_id: str = "", attempt: int = 1) -> str:
    """A reply to something the person said. The service URL came from a validated activity. Paced
    and retried as a campaign's sends are: only what Teams lists as retryable, after its Retry-After."""
    outcome = reply_send(
        service_url=service_url, conversation_id=conversation_id, tenant_id=tenant_id, text=text, attempt=attempt
    )
    if outcome.status == "retrying":
        send_reply.apply_async(
            args=[service_url, conversation_id, text, tenant_id], kwargs={"attempt": outcome.attempt},
            countdown=outcome.retry_in,
        )
    return outcome.status
