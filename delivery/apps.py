from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from campaigns.models import OptOut

        from . import signals

        post_save.connect(signals.opt_out_saved, sender=OptOut, dispatch_uid="crier-opt-out-saved")
        post_delete.connect(signals.opt_out_deleted, sender=OptOut, dispatch_uid="crier-opt-out-deleted")
