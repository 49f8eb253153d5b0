"""Celery tasks: thin wrappers that pass ids to the services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import feeding, follow_ups, installing, listing, materialising, notifying, recovery, services, webhooks, welcome
from .sending import delivery_send


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    # A live task never outlasts the reconciler's lease (DELIVERY_LEASE_SECONDS).
    time_limit=settings.DELIVERY_TASK_TIME_LIMIT_SECONDS,
)
def deliver(self, delivery_id: int) -> str:
    outcome = delivery_send(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        # Back on the queue it came from, so a direct message waits behind no campaign's messages
        # (the feeder names the queue as the routing key; otherwise the task's route decides).
        queue = (self.request.delivery_info or {}).get("routing_key") or None
        deliver.apply_async((delivery_id,), countdown=outcome.retry_in, queue=queue)
    return outcome.status


@shared_task(ignore_result=True)
def feed_deliveries() -> int:
    return feeding.feed()


@shared_task(ignore_result=True)
def campaign_materialise(campaign_id: int, after: int) -> int:
    return materialising.campaign_materialise(campaign_id=campaign_id, after=after)


@shared_task(ignore_result=True)
def campaign_list_members(campaign_id: int) -> str:
    return listing.campaign_members_list(campaign_id=campaign_id)


@shared_task(ignore_result=True)
def install_apps(patience: float = 0.0) -> int:
    return installing.installs_run(patience=patience)


@shared_task(ignore_result=True)
def send_notices(patience: float = 0.0) -> int:
    return notifying.notices_run(patience=patience)


@shared_task(ignore_result=True)
def launch_due_campaigns() -> list[int]:
    return services.launch_due_campaigns()


@shared_task(ignore_result=True)
def send_due_reminders() -> list[int]:
    return follow_ups.reminders_send_due()


@shared_task(ignore_result=True)
def complete_finished_campaigns() -> list[int]:
    return services.campaigns_complete_finished()


@shared_task(ignore_result=True)
def reconcile() -> dict[str, int]:
    return recovery.reconcile()


@shared_task(ignore_result=True)
def welcome_new_starters() -> int:
    return len(welcome.welcome_new_starters())


@shared_task(ignore_result=True)
def dispatch_webhooks() -> int:
    return webhooks.dispatch()


@shared_task(
    acks_late=True,
    ignore_result=True,
    # A live task never outlasts the lease after which the periodic pass takes its rows back.
    time_limit=settings.DELIVERY_TASK_TIME_LIMIT_SECONDS,
)
def message_change_chunk(change_id: int, generation: int) -> int:
    from .message_changes import message_change_chunk as chunk

    return chunk(change_id=change_id, generation=generation)


@shared_task(ignore_result=True)
def reconcile_message_changes() -> dict[str, int]:
    from .message_changes import message_changes_reconcile

    return message_changes_reconcile()
