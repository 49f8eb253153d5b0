"""People, audiences, message templates, campaigns and opt-outs: what is sent, to whom."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q, Value
from django.utils import timezone

from bots.models import TeamsTeam

from ..attributes import attributes_problem_list
from ..rules import validate_rules
from ..sources import group_id_normal, source_problem
from ..template_checks import validate_template


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


class DirectorySync(models.Model):
    """One run of the people sync from Entra ID (``campaigns.entra_sync``): full or from the last delta
    link, its progress while it runs, and what it did."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    full = models.BooleanField(default=False, help_text="Listed everyone, rather than the changes since the last run.")
    dry_run = models.BooleanField(default=False, help_text="Counted what it would do, and changed nothing.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    pages = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0, help_text="People Graph listed.")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    reactivated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Listed, not taken: guests, disabled accounts nobody knew.")
    problems = models.JSONField(default=list, blank=True, help_text="People it could not take, and why.")
    error = models.TextField(blank=True, help_text="Why the run failed, in plain words.")
    delta_link = models.TextField(blank=True, help_text="Where the next run starts (kept after a run that succeeded).")
    selected = models.TextField(blank=True, help_text="The Graph properties it asked for: when they change, a full run.")

    class Meta:
        ordering = ["-id"]
        verbose_name = "Entra ID sync"

    def __str__(self) -> str:
        return f"Entra ID sync {self.pk} ({self.get_status_display().lower()})"


class Recipient(models.Model):
    """A person as the HR system knows them. Their Teams address lives in ``bots.TeamsAddress``,
    joined on ``aad_object_id``, because Teams may tell us about a person before HR does."""

    class Origin(models.TextChoices):
        HR = "hr", "HR (the API or the admin)"
        ENTRA = "entra", "Entra ID"

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
    origin = models.CharField(
        max_length=8, choices=Origin.choices, default=Origin.HR, db_default=Origin.HR,  # raw SQL inserts too
        help_text="Who first told Crier of this person: an HR sync deactivates only its own people.",
    )
    entra_managed = models.BooleanField(
        default=False, db_default=False,
        help_text="Kept by the Entra ID sync: the fields it owns are Entra ID's to change (ENTRA_SYNC_FIELDS).",
    )
    inactive_from_entra = models.BooleanField(
        default=False, db_default=False,
        help_text="Made inactive by the Entra ID sync (a removed or disabled account): it alone brings them back.",
    )
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


WELCOME_NOT_LISTED = (
    "A welcome campaign greets each new starter as they come, from this audience: it cannot be an Entra ID group "
    "or a team (whose members are listed only now and then). Choose everyone, a list or rules."
)


class Audience(models.Model):
    class Kind(models.TextChoices):
        EVERYONE = "everyone", "Everyone active"
        STATIC = "static", "A static list"
        RULES = "rules", "Attribute rules"
        ENTRA_GROUP = "entra_group", "An Entra ID group"
        TEAM = "team", "The members of a team"

    # Kinds whose people are listed from Entra ID or Teams (``campaigns.members``), not read from Crier's own.
    LISTED_KINDS = (Kind.ENTRA_GROUP, Kind.TEAM)

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.EVERYONE)
    rules = models.JSONField(
        default=list,
        blank=True,
        help_text='All must hold, e.g. [{"field": "department", "op": "eq", "value": "Sales"}, '
        '{"field": "country", "op": "in", "value": ["FR", "DE"]}].',
    )
    source_id = models.CharField(
        "group or team id", max_length=200, blank=True,
        help_text="The Entra ID group's object id, or the Teams team's id (19:…@thread.tacv2).",
    )
    source_name = models.CharField(
        "group or team name", max_length=300, blank=True, help_text="Its name when it was chosen, to recognise it by.",
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
        if self.pk and (saved := Audience.objects.filter(pk=self.pk).values("kind", "source_id").first()) and (
                saved["kind"] != self.kind or saved["source_id"] != self.source_id) and (
                self.kind in self.LISTED_KINDS or saved["kind"] in self.LISTED_KINDS) and Campaign.objects.filter(
                audience_id=self.pk, status__in=(Campaign.Status.RUNNING, Campaign.Status.PAUSED),
                kind__in=Campaign.FED_KINDS, materialised_at__isnull=True).exists():
            raise ValidationError({"kind": "A campaign using this audience is still being written: its kind, group or "
                                           "team can change once that campaign's people are all written."})
        if self.kind == self.Kind.RULES:
            try:
                validate_rules(self.rules)
            except ValidationError as exc:
                raise ValidationError({"rules": exc.messages}) from exc
            if not self.rules:
                raise ValidationError({"rules": "A rules audience needs at least one rule."})
        elif self.rules:
            raise ValidationError({"rules": "Only a rules audience has rules."})
        if self.kind in self.LISTED_KINDS:
            if problem := source_problem(self.kind, self.source_id):
                raise ValidationError({"source_id": problem})
            if self.kind == self.Kind.TEAM and not TeamsTeam.objects.filter(team_id=self.source_id).exists():
                raise ValidationError({"source_id": "Crier's bot was never added to this team: add the app to the team "
                                                    "in Teams, and choose it from the teams Crier is in."})
            if self.pk and Campaign.objects.filter(audience_id=self.pk, kind=Campaign.Kind.WELCOME).exclude(
                    status__in=(Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)).exists():
                raise ValidationError({"kind": WELCOME_NOT_LISTED})
        elif self.source_id:
            raise ValidationError({"source_id": "Only a group or team audience names a group or a team."})

    def save(self, *args, **kwargs):
        if self.kind == self.Kind.ENTRA_GROUP:  # one spelling of an object id, as Graph writes it
            self.source_id = group_id_normal(self.source_id) or self.source_id
        super().save(*args, **kwargs)


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


URGENT_TEXT_MOST = 150  # what Teams shows of a notification's preview


def urgent_problems(*, kind: str, urgent: bool, urgent_text: str) -> dict[str, str]:
    """What is wrong with a campaign's urgency, by field; empty when nothing is (the admin and the API alike)."""
    if not urgent:
        return {}
    if kind != Campaign.Kind.ANNOUNCEMENT:
        return {"urgent": "Only an announcement can be urgent: a welcome or a direct message is not one approvers see."}
    text = (urgent_text or "").strip()
    if not text:
        return {"urgent_text": "An urgent campaign needs the words of its pop-up."}
    if "{{" in text or "}}" in text:
        return {"urgent_text": "The pop-up is the same for everyone: it cannot hold placeholders."}
    return {}


def acknowledgement_problems(*, kind: str, acknowledgement: str, category_mandatory: bool | None) -> dict[str, str]:
    """What is wrong with asking a campaign's people to acknowledge it, by field; empty when nothing is (the admin and
    the API alike). ``category_mandatory`` is None when the category is not known yet."""
    if acknowledgement != Campaign.Acknowledgement.POLICY:
        return {}
    if kind == Campaign.Kind.WELCOME:
        return {"acknowledgement": "A welcome campaign cannot be a policy: a policy is one message, edited for all "
                                   "who have it and acknowledged again; ask for an acknowledgement instead."}
    if category_mandatory is False:
        return {"category": "Everyone must acknowledge a policy, so nobody may have opted out of it: choose a "
                            "mandatory category."}
    return {}


POLL_QUESTION_MOST = 300
POLL_OPTION_MOST = 100
REMIND_TIMES_MOST = 5  # reminders of one campaign: more is nagging
REMIND_AFTER_LEAST = timedelta(minutes=1)
REMIND_AFTER_MOST = timedelta(days=90)  # what a person's read receipts are looked for (delivery.reads)
POLL_OPTIONS = (2, 10)  # the fewest and the most options a poll has


def poll_problems(*, question: str, options: Any, closes_at: Any = None, closes_changed: bool = False
                  ) -> dict[str, str]:
    """What is wrong with a campaign's poll, by field; empty when nothing is, or when it has none (the admin and the
    API alike). A closing time is checked to be in the future when it is set or changed (``closes_changed``)."""
    question = (question or "").strip()
    if not question and not options:
        return {"poll_closes_at": "Only a poll closes: write its question and options."} if closes_at else {}
    if not question:
        return {"poll_question": "A poll needs its question."}
    if "{{" in question or "}}" in question:
        return {"poll_question": "A poll's question is the same for everyone: it cannot hold placeholders."}
    if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
        return {"poll_options": "A poll's options are a list of texts."}
    cleaned = [option.strip() for option in options]
    fewest, most = POLL_OPTIONS
    if not fewest <= len(cleaned) <= most:
        return {"poll_options": f"A poll has from {fewest} to {most} options."}
    if any(not option for option in cleaned):
        return {"poll_options": "An option cannot be empty."}
    if any(len(option) > POLL_OPTION_MOST for option in cleaned):
        return {"poll_options": f"An option is at most {POLL_OPTION_MOST} characters."}
    if any("{{" in option or "}}" in option for option in cleaned):
        return {"poll_options": "Options are the same for everyone: they cannot hold placeholders."}
    if len({option.casefold() for option in cleaned}) < len(cleaned):
        return {"poll_options": "Two options are the same: each answer must be told apart."}
    if closes_at is not None and closes_changed and closes_at <= timezone.now():
        return {"poll_closes_at": "The poll would be closed already: choose a time in the future."}
    return {}


def clicks_problems(*, track_clicks: bool) -> dict[str, str]:
    """What is wrong with counting a campaign's clicks, by field: its links lead through Crier's own address."""
    if track_clicks and not settings.PUBLIC_BASE_URL:
        return {"track_clicks": "Counting clicks leads each link through Crier: set PUBLIC_BASE_URL (where people "
                                "reach Crier) first."}
    return {}


def reminder_problems(*, kind: str | None, remind_who: str, remind_after: timedelta | None, remind_times: int | None,
                      acknowledgement: str, poll_question: str) -> dict[str, str]:
    """What is wrong with a campaign's reminders (``delivery.follow_ups``), by field."""
    if not remind_who:
        return {}
    if kind != "announcement":
        return {"remind_who": "Only an announcement sends reminders: a welcome greets each person on their own."}
    if remind_who == "not_acknowledged" and not acknowledgement:
        return {"remind_who": "It asks nobody to acknowledge it: ask for an acknowledgement, or remind whom has not "
                              "read it."}
    if remind_who == "not_answered" and not poll_question:
        return {"remind_who": "It has no poll: add one, or remind whom has not read it."}
    if remind_after is None:
        return {"remind_after": "Say how long after it has sent to everyone, e.g. 2 days."}
    if not REMIND_AFTER_LEAST <= remind_after <= REMIND_AFTER_MOST:
        return {"remind_after": "From 1 minute to 90 days (read receipts are looked for over 90 days)."}
    if remind_times is None or not 1 <= remind_times <= REMIND_TIMES_MOST:
        return {"remind_times": f"From 1 to {REMIND_TIMES_MOST} reminders."}
    return {}


def install_app_default() -> bool:
    return settings.INSTALL_APP_DEFAULT


class Campaign(models.Model):
    class Kind(models.TextChoices):
        ANNOUNCEMENT = "announcement", "Announcement"
        WELCOME = "welcome", "Welcome"
        DIRECT = "direct", "Direct message"  # to named people, at once: transactional notices, tests

    # Kinds whose deliveries are all written up front and fed to the queue, and which complete.
    FED_KINDS = (Kind.ANNOUNCEMENT, Kind.DIRECT)

    class Acknowledgement(models.TextChoices):
        NONE = "", "Not asked"
        ASKED = "asked", "Ask people to acknowledge it"
        POLICY = "policy", "A policy: everyone acknowledges it, again after each edit"

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
    install_app = models.BooleanField(
        "install the app for people who lack it", default=install_app_default, db_default=False,
        help_text="For people who lack the app (Teams says so, or never told Crier of them), Crier installs it through "
        "Microsoft Graph, then sends (docs/going-live.md). Never for someone who removed or blocked it. New "
        "campaigns take INSTALL_APP_DEFAULT.",
    )
    urgent = models.BooleanField(
        default=False, db_default=False,
        help_text="Also pops up in each person's Teams activity feed, with a sound, linking to the message "
        "(docs/going-live.md). An urgent campaign always needs an approver's approval.",
    )
    urgent_text = models.CharField(
        "urgent notice", max_length=URGENT_TEXT_MOST, blank=True, db_default="",
        help_text="What the pop-up says, the same for everyone (no placeholders). Required when urgent.",
    )
    acknowledgement = models.CharField(
        "acknowledgement", max_length=16, choices=Acknowledgement.choices, blank=True, default="", db_default="",
        help_text="Ask each person to acknowledge the message with a button in its card (docs/engagement.md). A policy "
        "must be acknowledged by everyone, its category mandatory, and again whenever the sent message is edited.",
    )
    poll_question = models.CharField(
        "poll question", max_length=POLL_QUESTION_MOST, blank=True, db_default="",
        help_text="A question each person answers in the card (docs/engagement.md); empty for no poll.",
    )
    poll_options = models.JSONField(
        "poll options", default=list, blank=True, db_default=Value([], output_field=models.JSONField()),
        help_text=f"From {POLL_OPTIONS[0]} to {POLL_OPTIONS[1]} answers to choose from, each at most "
        f"{POLL_OPTION_MOST} characters.",
    )
    poll_multiple = models.BooleanField(
        "several answers", default=False, db_default=False, help_text="Each person may choose more than one option.",
    )
    poll_closes_at = models.DateTimeField(
        "poll closes at", null=True, blank=True,
        help_text="After this, answers are no longer taken or changed; empty to keep it open.",
    )
    track_clicks = models.BooleanField(
        "count clicks", default=False, db_default=False,
        help_text="Count who opens the card's link buttons, through links to Crier signed for each person "
        "(docs/engagement.md). Off by default: people's clicks are theirs. Needs PUBLIC_BASE_URL.",
    )
    class FollowUp(models.TextChoices):
        FAILED = "failed", "Those it failed for"
        NOT_READ = "not_read", "Those who have not read it"
        NOT_ACKNOWLEDGED = "not_acknowledged", "Those who have not acknowledged it"
        NOT_ANSWERED = "not_answered", "Those who have not answered its poll"

    follows = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="follow_ups", editable=False,
        help_text="The campaign this one follows up: a reminder, or a send again to those it failed for "
        "(docs/engagement.md). Its acknowledgements and answers count for that campaign.",
    )
    follow_up_who = models.CharField(
        "sent to", max_length=16, choices=FollowUp.choices, blank=True, db_default="", editable=False,
        help_text="Whom of the campaign it follows it is sent to.",
    )
    follow_up_number = models.PositiveSmallIntegerField(
        null=True, blank=True, editable=False, help_text="Which reminder it is: 1 for the first (empty for a send again).",
    )
    follow_up_resends = models.BooleanField(
        default=False, db_default=False, editable=False,
        help_text="It sends the campaign it follows's message again (its latest edit included, and each edit of that "
        "campaign edits it too), rather than a reminder's own words.",
    )
    follow_ups_fingerprint = models.CharField(
        max_length=64, blank=True, db_default="", editable=False,
        help_text="What its approval covered, as it was launched, of what its follow-ups send: their approval.",
    )
    remind_who = models.CharField(
        "remind", max_length=16, blank=True, db_default="",
        choices=[("", "Nobody"), *[(value, label) for value, label in FollowUp.choices if value != "failed"]],
        help_text="Send a reminder, a campaign of its own, to the people who have not done this yet.",
    )
    remind_after = models.DurationField(
        "remind after", null=True, blank=True,
        help_text="How long after the campaign (or the reminder before) has sent to everyone, e.g. 2 days.",
    )
    remind_times = models.PositiveSmallIntegerField(
        "reminders", default=1, db_default=1,
        help_text=f"At most how many reminders, from 1 to {REMIND_TIMES_MOST}; each goes only to those still to do it.",
    )
    remind_template = models.ForeignKey(
        MessageTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name="reminder's message",
        help_text="What the reminder says; empty to send the message again. It carries the same button and poll.",
    )
    message_version = models.PositiveIntegerField(
        default=1, db_default=1, editable=False,
        help_text="1 for the message as first sent, one more for each edit of it: what an acknowledgement was of.",
    )
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
        indexes = [models.Index(fields=["status", "send_at"], name="campaign_due_idx"),
                   # The scheduler's look, every few seconds, for the reminders due (delivery.follow_ups).
                   models.Index(fields=["status"], condition=~Q(remind_who=""), name="campaign_reminding_idx")]
        constraints = [
            # A reminder is sent once, however many schedulers look at once (delivery.follow_ups).
            models.UniqueConstraint(fields=["follows", "follow_up_number"], name="one_reminder_of_each_number"),
            # One welcome campaign runs at a time, so a new starter gets exactly one welcome.
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(kind="welcome", status="running"),
                name="one_running_welcome_campaign",
            )
        ]

    def __str__(self) -> str:
        return self.name


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
