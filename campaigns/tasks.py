"""Celery tasks: thin wrappers that pass ids to the services."""

import logging

from celery import shared_task

from core.errors import ApplicationError

from .api.idempotency import idempotency_forget_expired
from .entra_sync import entra_sync
from .members import listing_run

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def forget_expired_idempotency_keys() -> int:
    return idempotency_forget_expired()


@shared_task(ignore_result=True)
def sync_entra() -> int | None:
    """Beat's run of the people sync from Entra ID; the run's row says how it went."""
    try:
        return entra_sync().pk
    except ApplicationError as error:  # off, not configured, or another run is going
        logger.warning("entra sync not started: %s", error.message)
        return None


@shared_task(ignore_result=True)
def list_members(listing_id: int) -> str:
    """A look at the members of an audience's group or team, for the editor and approvals."""
    listing = listing_run(listing_id=listing_id)
    return "held by another task" if listing is None else listing.status
