"""Opt-outs become webhook events however they are made or lifted: by the person in Teams, by the
HR system through the API, or by comms staff in the admin. A deleted campaign or person takes its
delivery rows along."""

from __future__ import annotations

from . import webhooks


def _payload(opt_out) -> dict:
    return {
        "recipient": opt_out.recipient.external_id,
        "category": opt_out.category.slug if opt_out.category_id else None,
        "source": opt_out.source,
        "at": opt_out.created_at,
    }


# A campaign's or a person's delivery rows go with them (see delivery.models: Django's cascade would
# look for them without the primary key).
def campaign_deleting(sender, instance, **kwargs) -> None:
    from .services import deliveries_delete

    deliveries_delete(campaign_id=instance.pk)


def recipient_deleting(sender, instance, **kwargs) -> None:
    from .services import deliveries_delete

    deliveries_delete(recipient_id=instance.pk)


# Called inside the transaction that saves or deletes the opt-out: the event stands or falls with it.
def opt_out_saved(sender, instance, created: bool, **kwargs) -> None:
    if created:
        webhooks.event_record(type="opt_out.created", payload=_payload(instance))


def opt_out_deleted(sender, instance, **kwargs) -> None:
    webhooks.event_record(type="opt_out.deleted", payload=_payload(instance))
