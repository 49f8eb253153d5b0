"""People, audiences, message templates, campaigns and opt-outs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .template_checks import validate_template


class RecipientSync(models.Model):
    """A full sync from the HR system: "these are all the active employees", sent in as many bulk
    uploads as it takes; finishing it deactivates everyone active who was not in any of them."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deactivated = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "recipient sync"

    def __str__(self) -> str:
        return f"Sync {self.pk} ({'finished' if self.finished_at else 'open'})"


class Recipient(models.Model):
    """A person as the HR system knows them. Their Teams address lives in ``bots.TeamsAddress``,
    joined on ``aad_object_id``, because Teams may tell us about a person before HR does."""

    external_id = models.CharField(max_length=255, unique=True, help_text="The HR system's id.")
    email = models.EmailField(blank=True)
    upn = models.CharField("UPN", max_length=255, blank=True)
    aad_object_id = models.UUIDField("Entra object id", null=True, blank=True, unique=True)
    tenant_id = models.CharField(max_length=64, blank=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    display_name = models.CharField(max_length=300, blank=True)
    department = models.CharField(max_length=200, blank=True, db_index=True)
    job_title = models.CharField(max_length=200, blank=True)
    location = models.CharField(max_length=200, blank=True)
    country = models.CharField(max_length=2, blank=True, db_index=True, help_text="ISO 3166-1 alpha-2.")
    time_zone = models.CharField(max_length=64, blank=True)
    locale = models.CharField(max_length=35, blank=True)
    start_date = models.DateField(null=True, blank=True, db_index=True)
    is_active = models.BooleanField(default=True, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    last_sync = models.ForeignKey(
        RecipientSync, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The latest full sync that listed this person.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.display_name or f"{self.first_name} {self.last_name}".strip() or self.external_id

    def clean(self) -> None:
        from .attributes import attributes_problem_list

        if problems := attributes_problem_list(self.attributes):
            raise ValidationError({"attributes": problems})


class Category(models.Model):
    """What a campaign is about, for opt-outs. Nobody can opt out of a mandatory category."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)
    mandatory = models.BooleanField(
        default=False, help_text="Sent even to people who opted out (not to people who blocked the bot)."
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Audience(models.Model):
    class Kind(models.TextChoices):
        EVERYONE = "everyone", "Everyone active"
        STATIC = "static", "A static list"
        RULES = "rules", "Attribute rules"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.EVERYONE)
    rules = models.JSONField(
        default=list,
        blank=True,
        help_text='All must hold, e.g. [{"field": "department", "op": "eq", "value": "Sales"}, '
        '{"field": "country", "op": "in", "value": ["FR", "DE"]}].',
    )
    members = models.ManyToManyField(Recipient, blank=True, related_name="audiences")
    excluded = models.ManyToManyField(Recipient, blank=True, related_name="excluded_from_audiences")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .rules import validate_rules

        if self.kind == self.Kind.RULES:
            try:
                validate_rules(self.rules)
            except ValidationError as exc:
                raise ValidationError({"rules": exc.messages}) from exc
            if not self.rules:
                raise ValidationError({"rules": "A rules audience needs at least one rule."})
        elif self.rules:
            raise ValidationError({"rules": "Only a rules audience has rules."})


class MessageTemplate(models.Model):
    """A message with per-recipient placeholders such as ``{{first_name}}``."""

    class Kind(models.TextChoices):
        MARKDOWN = "markdown", "Markdown text"
        ADAPTIVE_CARD = "adaptive_card", "Adaptive Card"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MARKDOWN)
    text = models.TextField(blank=True, help_text="Markdown body (markdown templates) or notification summary.")
    card = models.JSONField(null=True, blank=True, help_text="Adaptive Card JSON (adaptive card templates).")
    design = models.JSONField(
        null=True, blank=True,
        help_text="What the card editor was given (title, image, body, buttons); empty for cards written as JSON.",
    )
    direct_approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who approved it for direct messages (transactional notices) to any number of people.",
    )
    direct_approved_at = models.DateTimeField(
        null=True, blank=True, help_text="Its direct messages count toward no reach until it is edited."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        validate_template(kind=self.kind, text=self.text or "", card=self.card)


class Campaign(models.Model):
    class Kind(models.TextChoices):
        ANNOUNCEMENT = "announcement", "Announcement"
        WELCOME = "welcome", "Welcome"
        DIRECT = "direct", "Direct message"  # to named people, at once: transactional notices, tests

    # Kinds whose deliveries are all written up front and fed to the queue, and which complete.
    FED_KINDS = (Kind.ANNOUNCEMENT, Kind.DIRECT)

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ANNOUNCEMENT)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="campaigns")
    audience = models.ForeignKey(
        Audience,
        on_delete=models.PROTECT,
        related_name="campaigns",
        null=True,
        blank=True,
        help_text="Who receives it. A welcome campaign without one welcomes every new starter.",
    )
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="campaigns")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    send_at = models.DateTimeField(null=True, blank=True, help_text="When a scheduled campaign starts.")
    status_reason = models.CharField(max_length=500, blank=True, help_text="Why it paused, when it did.")
    launched_at = models.DateTimeField(null=True, blank=True)
    materialised_at = models.DateTimeField(
        null=True, blank=True, help_text="When every recipient had a delivery row."
    )
    total_deliveries = models.PositiveIntegerField(default=0, help_text="Delivery rows written so far.")
    settled_below = models.BigIntegerField(
        default=0, editable=False, help_text="Every delivery row of this campaign with a lower id has ended (delivery.settled)."
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The author, when made in the admin.",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="What was approved: its template, audience and category as they were."
    )
    approved_people = models.PositiveIntegerField(
        null=True, blank=True, help_text="How many people the approval showed: a launch reaching more voids it."
    )
    approval_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When its author asked the approvers to look at it."
    )
    api_key = models.ForeignKey(
        "ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The API key that sent it (direct messages), for the reach that needs approval.",
    )
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who last changed its template, audience or category in the admin.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("approve_campaign", "Can approve a campaign for a large audience"),
            ("recall_campaign", "Can recall a sent message for everyone (editing it also needs change)"),
            ("launch_campaign", "Can launch, schedule or resume a campaign"),
            ("control_campaign", "Can pause or cancel a campaign"),
        ]
        indexes = [models.Index(fields=["status", "send_at"], name="campaign_due_idx")]
        constraints = [
            # One welcome campaign runs at a time, so a new starter gets exactly one welcome.
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(kind="welcome", status="running"),
                name="one_running_welcome_campaign",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        return self.status in (self.Status.DRAFT, self.Status.SCHEDULED)


class OptOut(models.Model):
    """A person who asked not to receive a category (or anything, when ``category`` is empty)."""

    class Source(models.TextChoices):
        TYPED_STOP = "typed_stop", 'Typed "stop"'
        CARD_BUTTON = "card_button", "Card button"
        BLOCKED = "blocked", "Blocked or uninstalled the bot"
        API = "api", "API"
        ADMIN = "admin", "Admin"

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="opt_outs")
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, null=True, blank=True, related_name="opt_outs",
        help_text="Empty means every non-mandatory category.",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "category"], nulls_distinct=False, name="one_opt_out_per_category"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient} opted out of {self.category or 'everything'}"


class ApiKey(models.Model):
    """A key an HR system sends as ``Authorization: Bearer <key>``. Only its SHA-256 is stored."""

    class Scope(models.TextChoices):
        READ = "read", "Read everything"
        RECIPIENTS_WRITE = "recipients:write", "Create, update and deactivate people"
        CAMPAIGNS_WRITE = "campaigns:write", "Prepare templates, categories, audiences and campaigns"
        CAMPAIGNS_SEND = "campaigns:send", "Launch, schedule, pause, resume and cancel campaigns"
        OPT_OUTS_WRITE = "opt-outs:write", "Record and lift opt-outs"
        CAMPAIGNS_APPROVE = "campaigns:approve", "Approve the large campaigns it launches or schedules (given only on request)"

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
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        CANCEL = "cancel", "Cancelled"
        TEST_SEND = "test_send", "Sent a test"
        EDIT_SENT = "edit_sent", "Edited the sent message"
        RECALL = "recall", "Recalled the sent message"
        OPT_OUT_ADDED = "opt_out_added", "Recorded an opt-out"
        OPT_OUT_REMOVED = "opt_out_removed", "Removed an opt-out"
        EXPORT = "export", "Exported per-person results"

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
