"""Editing a template withdraws the approval of the unsent campaigns that use it: what was approved
is no longer what they say."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from .approvals import approvals_withdraw_for_template
from .audit import SYSTEM
from .models import MessageTemplate


@receiver(post_save, sender=MessageTemplate, dispatch_uid="crier-template-edited")
def template_edited(sender, instance: MessageTemplate, created: bool, **kwargs) -> None:
    if not created:
        approvals_withdraw_for_template(template_id=instance.pk, actor=SYSTEM)
