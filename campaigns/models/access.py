"""Who may do what, and what they did: API keys, their calls and idempotent replays, staff profiles
and the audit trail."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from .content import Campaign, Recipient


class ApiKey(models.Model):
    """A key an HR system sends as ``Authorization: Bearer <key>``. Only its SHA-256 is stored."""

    class Scope(models.TextChoices):
        READ = "read", "Read everything"
        RECIPIENTS_WRITE = "recipients:write", "Create, update and deactivate people"
        CAMPAIGNS_WRITE = "campaigns:write", "Prepare templates, categories, audiences and campaigns"
        CAMPAIGNS_SEND = "campaigns:send", "Launch, schedule, pause, resume and cancel campaigns"
        OPT_OUTS_WRITE = "opt-outs:write", "Record and lift opt-outs"
        CAMPAIGNS_APPROVE = "campaigns:approve", "Approve the large or urgent campaigns it launches or schedules (given only on request)"

    # What a key gets unless told otherwise: everything but approving its own large campaigns.
    DEFAULT_SCOPES = (Scope.READ, Scope.RECIPIENTS_WRITE, Scope.CAMPAIGNS_WRITE, Scope.CAMPAIGNS_SEND, Scope.OPT_OUTS_WRITE)

    name = models.CharField(max_length=150, unique=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, blank=True, help_text="What the key may do.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class ApiRequest(models.Model):
    """The audit trail: every API call, attributed to its key."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="requests")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField()
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API request"

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status_code}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed for 24 hours."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    completed = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="one_record_per_idempotency_key")]


class StaffProfile(models.Model):
    """A staff member's own settings: the time zone their admin pages speak in, and the person they
    are in Teams, to receive their own tests."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="crier_profile")
    time_zone = models.CharField(max_length=64, blank=True, help_text="Empty: the server's time zone.")
    recipient = models.ForeignKey(
        Recipient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who you are in Teams: tests you send go to this person.",
    )
    # Who signs in as this account with Entra ID (campaigns.sign_in); empty for a local account.
    entra_tenant_id = models.CharField(max_length=64, blank=True, default="")
    entra_object_id = models.UUIDField(null=True, blank=True, editable=False)
    signed_in_at = models.DateTimeField(null=True, blank=True, help_text="The last sign-in with Entra ID.")

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["entra_tenant_id", "entra_object_id"], condition=models.Q(entra_object_id__isnull=False),
            name="one_account_per_entra_identity")]

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class AuditEntry(models.Model):
    """Who did what that changes who receives what: launches, approvals, cancellations, recalls,
    opt-out changes. Written by the services, whichever door (admin or API) the action came in by."""

    class Action(models.TextChoices):
        LAUNCH = "launch", "Launched"
        SCHEDULE = "schedule", "Scheduled"
        APPROVE = "approve", "Approved"
        APPROVE_DIRECT = "approve_direct", "Approved a template for direct messages"
        APPROVAL_REQUESTED = "approval_requested", "Asked for approval"
        CHANGE = "change", "Changed what a campaign sends or whom it reaches"
        APPROVAL_WITHDRAWN = "approval_withdrawn", "Approval withdrawn"
        UNLAUNCH = "unlaunch", "Sent back to draft before anything was sent"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        CANCEL = "cancel", "Cancelled"
        TEST_SEND = "test_send", "Sent a test"
        EDIT_SENT = "edit_sent", "Edited the sent message"
        RECALL = "recall", "Recalled the sent message"
        OPT_OUT_ADDED = "opt_out_added", "Recorded an opt-out"
        OPT_OUT_REMOVED = "opt_out_removed", "Removed an opt-out"
        EXPORT = "export", "Exported per-person results"
        FOLLOW_UP = "follow_up", "Followed up: a reminder, or sent again to those it failed for"
        NOTICE_REFUSED = "notice_refused", "Urgent notices refused by Microsoft Graph"
        ROLES_FROM_ENTRA = "roles_from_entra", "Roles set from Entra ID at sign-in"

    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries")
    summary = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.summary}"

    @property
    def actor(self) -> str:
        if self.user_id:
            return str(self.user)
        if self.api_key_id:
            return f"API key {self.api_key}"
        return "Crier"
