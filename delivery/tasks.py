"""Celery tasks: thin wrappers that pass ids to the services."""

from __future__ import annotations

from celery import shared_task

from . import services, welcome
from .sending import delivery_send


@shared_task(acks_late=True, ignore_result=True)
def deliver(delivery_id: int) -> str:
    outcome = delivery_send(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        deliver.apply_async((delivery_id,), countdown=outcome.retry_in)
    return outcome.status


@shared_task(ignore_result=True)
def campaign_fan_out(campaign_id: int) -> int:
    return services.campaign_fan_out(campaign_id=campaign_id)


@shared_task(ignore_result=True)
def launch_due_campaigns() -> list[int]:
    return services.launch_due_campaigns()


@shared_task(ignore_result=True)
def complete_finished_campaigns() -> int:
    return services.campaigns_complete_finished()


@shared_task(ignore_result=True)
def welcome_new_starters() -> int:
    return len(welcome.welcome_new_starters())
