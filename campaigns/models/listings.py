"""The members of an Entra ID group or a Teams team, as Crier listed them at one moment (``campaigns.members``):
for the audience editor and approvals (the audience's latest listing), and for a launched campaign, whose
own listing is the people it is sent to."""

from __future__ import annotations

from django.db import models

from .content import Audience, Campaign, Recipient


class MemberListing(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Listing"
        SUCCEEDED = "succeeded", "Listed"
        FAILED = "failed", "Failed"

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="listings")
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="listings",
        help_text="The campaign whose launch made it: the people it is sent to. Empty: a look for the editor.",
    )
    kind = models.CharField(max_length=16, choices=Audience.Kind.choices)
    source_id = models.CharField(max_length=200)
    source_name = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    listed = models.PositiveIntegerField(default=0, help_text="Members Entra ID or Teams listed.")
    matched = models.PositiveIntegerField(default=0, help_text="Of them, people Crier knows.")
    unknown = models.PositiveIntegerField(default=0, help_text="Members Crier does not know (not synced, or guests).")
    unknown_sample = models.JSONField(default=list, blank=True, help_text="The first of them, to look for.")
    error = models.TextField(blank=True, help_text="Why it failed, in plain words.")

    class Meta:
        ordering = ["-id"]
        verbose_name = "member listing"
        indexes = [models.Index(fields=["audience", "status", "-id"], name="listing_latest_idx")]

    def __str__(self) -> str:
        return f"Members of {self.source_name or self.source_id} ({self.get_status_display().lower()})"


class ListedMember(models.Model):
    """One person a listing found."""

    listing = models.ForeignKey(MemberListing, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["listing", "recipient"], name="listed_once")]
