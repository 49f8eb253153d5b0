from celery import shared_task

from .api.idempotency import idempotency_forget_expired


@shared_task(ignore_result=True)
def forget_expired_idempotency_keys() -> int:
    return idempotency_forget_expired()
