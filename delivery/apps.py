from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save, pre_delete

        from campaigns.models import Campaign, OptOut, Recipient

        from . import signals

        post_save.connect(signals.opt_out_saved, sender=OptOut, dispatch_uid="crier-opt-out-saved")
        post_delete.connect(signals.opt_out_deleted, sender=OptOut, dispatch_uid="crier-opt-out-deleted")
        pre_delete.connect(signals.campaign_deleting, sender=Campaign, dispatch_uid="crier-campaign-deleting")
        pre_delete.connect(signals.recipient_deleting, sender=Recipient, dispatch_uid="crier-recipient-deleting")
