"""Opt-outs become webhook events however they are made or lifted: by the person in Teams, by the
HR system through the API, or by comms staff in the admin."""

from __future__ import annotations

from . import webhooks


def _payload(opt_out) -> dict:
    return {
        "recipient": opt_out.recipient.external_id,
        "category": opt_out.category.slug if opt_out.category_id else None,
        "source": opt_out.source,
        "at": opt_out.created_at,
    }


# Called inside the transaction that saves or deletes the opt-out: the event stands or falls with it.
def opt_out_saved(sender, instance, created: bool, **kwargs) -> None:
    if created:
        webhooks.event_record(type="opt_out.created", payload=_payload(instance))


def opt_out_deleted(sender, instance, **kwargs) -> None:
    webhooks.event_record(type="opt_out.deleted", payload=_payload(instance))
