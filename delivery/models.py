"""One row per campaign and recipient: the truth about what happened to each person."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    FINAL = (Status.SENT, Status.FAILED, Status.SKIPPED)

    class SkipReason(models.TextChoices):
        OPTED_OUT = "opted_out", "Opted out"
        INACTIVE = "inactive", "No longer active"
        NO_TEAMS_IDENTITY = "no_teams_identity", "No Entra object id or Teams address"
        CAMPAIGN_CANCELLED = "campaign_cancelled", "Campaign cancelled"

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.ForeignKey("campaigns.Recipient", on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, db_default=Status.PENDING)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True, db_default="")
    error_code = models.CharField(max_length=100, blank=True, db_default="", help_text="Teams' error code, when it failed.")
    error_message = models.CharField(max_length=1000, blank=True, db_default="")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(db_default=0)
    ambiguous = models.BooleanField(
        db_default=False,
        help_text="A worker stopped while Teams was answering, so this person may have received the message "
        "twice (see README, Delivery guarantees).",
    )
    activity_id = models.CharField(max_length=500, blank=True, db_default="")
    conversation_id = models.CharField(max_length=500, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "recipient"], name="one_delivery_per_recipient")
        ]
        # Serves the counts per state and the feeder's walk through a campaign's pending rows.
        indexes = [models.Index(fields=["campaign", "status", "id"], name="delivery_campaign_status_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.recipient_id}: {self.status}"
