"""One row per campaign and recipient: the truth about what happened to each person."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.utils import timezone


UNSETTLED = ("pending", "sending", "retrying", "installing")

# A delivery's id is its campaign's id and its person's id in one number, campaign first
# (campaign * 2**32 + person; a check constraint holds it): the primary key alone makes a person's
# row unique in a campaign, holds a campaign's rows together in its order, and finds any person's
# row in any campaign. A campaign's million rows are then written with one full index (see
# delivery.services).
PERSON_BITS = 32


def delivery_id(campaign_id: int, recipient_id: int) -> int:
    return (campaign_id << PERSON_BITS) + recipient_id


# The ids a person's rows would have, one per campaign (an array, so each is one probe of the key).
PERSON_IDS = f"ARRAY(SELECT c.id * {1 << PERSON_BITS} + %s FROM campaigns_campaign AS c)"


def campaign_ids(campaign_id: int | str) -> tuple[int, int]:
    """The range of a campaign's delivery ids: (first, end) with the end excluded."""
    lowest = delivery_id(int(campaign_id), 0)
    return lowest, lowest + (1 << PERSON_BITS)


def entra_object_id(value: object) -> uuid.UUID | None:
    """A person's Entra object id as an inbound activity gives it (``from.aadObjectId``), or None for anything else."""
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def delivery_recalled(delivery_id: int) -> bool:
    """Whether a recall took the person's message back (their row's change is done)."""
    return DeliveryChange.objects.filter(delivery_id=delivery_id, status=DeliveryChange.Status.DONE,
                                         change__action=MessageChange.Action.RECALL).exists()


def campaign_recalled(campaign_id: int) -> bool:
    """Whether the campaign's message was recalled (a recall was started: it takes the message back from everyone)."""
    return MessageChange.objects.filter(campaign_id=campaign_id, action=MessageChange.Action.RECALL).exists()


def delivery_recalled_sql(delivery: str) -> str:
    """``delivery_recalled`` inside a statement: true when a recall took back the message of the row whose id is the
    SQL expression ``delivery``."""
    return f"""EXISTS (
       SELECT 1 FROM delivery_deliverychange AS recalled_row
         JOIN delivery_messagechange AS recall ON recall.id = recalled_row.change_id
        WHERE recalled_row.delivery_id = {delivery} AND recall.action = 'recall' AND recalled_row.status = 'done')"""


def campaign_recalled_sql(campaign: str) -> str:
    """``campaign_recalled`` inside a statement, for the campaign whose id is the SQL expression ``campaign``."""
    return f"EXISTS (SELECT 1 FROM delivery_messagechange AS recall WHERE recall.campaign_id = {campaign}" \
           " AND recall.action = 'recall')"


class Any(models.Lookup):
    """``column = ANY(array)``: each element one probe of the column's index."""

    lookup_name = "any"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


class DeliveryQuerySet(models.QuerySet):
    def of_campaign(self, campaign_id: int | str) -> "DeliveryQuerySet":
        """The campaign's rows, found through the primary key's range."""
        lowest, end = campaign_ids(campaign_id)
        return self.filter(campaign_id=int(campaign_id), pk__gte=lowest, pk__lt=end)

    def of_person(self, recipient_id: int) -> "DeliveryQuerySet":
        """The person's rows, one probe of the primary key per campaign."""
        return self.filter(id__any=RawSQL(PERSON_IDS, [recipient_id]))

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.set_id()
        return super().bulk_create(objs, *args, **kwargs)


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        INSTALLING = "installing", "Installing the app"  # Crier installs it for them, then sends (delivery.installing)
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    FINAL = (Status.SENT, Status.FAILED, Status.SKIPPED)

    class SkipReason(models.TextChoices):
        OPTED_OUT = "opted_out", "Opted out"
        INACTIVE = "inactive", "No longer active"
        NO_TEAMS_IDENTITY = "no_teams_identity", "No Entra object id or Teams address"
        CAMPAIGN_CANCELLED = "campaign_cancelled", "Campaign cancelled"

    class Install(models.TextChoices):
        INSTALLED = "installed", "Installed by Crier"
        PRESENT = "present", "Had the app already"

    class Notice(models.TextChoices):  # an urgent campaign's pop-up in the activity feed (delivery.notifying)
        DUE = "due", "Urgent notice due"
        SENDING = "sending", "Urgent notice being sent"
        NOTIFIED = "notified", "Urgent notice sent"
        UNANSWERED = "unanswered", "Urgent notice sent, Graph's answer lost"  # never sent again: it may have popped up
        FAILED = "failed", "Urgent notice refused"

    id = models.BigIntegerField(primary_key=True, editable=False, help_text="campaign * 2**32 + person")
    # A campaign's rows are written a million at a time (delivery.services): PostgreSQL checks no
    # foreign key on them (two trigger checks per row cost more than the insert itself) and keeps
    # no index of campaigns or people (the primary key serves both). A campaign's or a person's
    # rows are deleted with them through the primary key (delivery.signals), not by Django's
    # cascade, which would look for them without it.
    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.DO_NOTHING, related_name="deliveries", db_constraint=False, db_index=False
    )
    recipient = models.ForeignKey(
        "campaigns.Recipient", on_delete=models.DO_NOTHING, related_name="deliveries", db_constraint=False,
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, db_default=Status.PENDING)
    skip_reason = models.CharField(max_length=32, choices=SkipReason.choices, blank=True, db_default="")
    error_code = models.CharField(max_length=100, blank=True, db_default="", help_text="Teams' error code, when it failed.")
    error_message = models.CharField(max_length=1000, blank=True, db_default="")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(db_default=0)
    ambiguous = models.BooleanField(
        db_default=False,
        help_text="A worker stopped while Teams was answering, so this person may have received the message "
        "twice (see docs/architecture.md, Delivery guarantees).",
    )
    install = models.CharField(
        max_length=16, choices=Install.choices, blank=True, db_default="",
        help_text="The campaign let Crier install the app for the person, who lacked it: what Microsoft Graph did. "
        "When it refused, the error says why and what to do.",
    )
    notice = models.CharField(
        max_length=16, choices=Notice.choices, blank=True, db_default="",
        help_text="For an urgent campaign, once the message was sent: its pop-up in the person's Teams activity feed.",
    )
    read_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When Teams first reported the person read it (a read receipt): a lower bound, since a person or an "
        "organisation can turn read receipts off.",
    )
    acknowledged_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the person acknowledged the message as it is now (a campaign that asks for it). A policy's edit "
        "clears it: they acknowledge the new version again (its history is in Acknowledgement).",
    )
    # Not a PositiveSmallIntegerField: its CHECK would make adding the column scan every row under an exclusive lock.
    install_attempts = models.SmallIntegerField(db_default=0)
    activity_id = models.CharField(max_length=500, blank=True, db_default="")
    conversation_id = models.CharField(max_length=500, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id=F("campaign_id") * (1 << PERSON_BITS) + F("recipient_id")),
                name="delivery_id_is_campaign_and_person",
            ),
            # A person's id beyond 32 bits would make the id of a row of the next campaign.
            models.CheckConstraint(
                condition=models.Q(recipient_id__gte=0, recipient_id__lt=1 << PERSON_BITS), name="delivery_person_id_fits"
            ),
        ]
        # Rows still to be sent are found through the primary key from where they begin
        # (delivery.settled), not through an index a launch would write a million times.
        indexes = [
            # The few rows worth finding by state: in flight, waiting to retry, failed, skipped
            # (the reconciler, the failure reports). Sent and pending rows are not in it.
            models.Index(
                fields=["status", "campaign", "id"], name="delivery_outcome_idx",
                condition=~models.Q(status__in=("pending", "sent")),
            ),
            # Urgent notices still to send: only the rows sent since the notifier last took its batch.
            models.Index(fields=["id"], name="delivery_notice_due_idx", condition=models.Q(notice__in=("due", "sending"))),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.recipient_id}: {self.status}"

    def set_id(self) -> None:
        if self.id is None:
            self.id = delivery_id(self.campaign_id, self.recipient_id)

    def save(self, *args, **kwargs) -> None:
        self.set_id()
        super().save(*args, **kwargs)


Delivery._meta.pk.register_lookup(Any)


class Reaction(models.Model):
    """A person's reaction to the message Crier sent them (Teams' ``messageReaction``): one row a kind, gone when
    they take it back. Found by the delivery's id, so a campaign's are one range of the unique index."""

    delivery = models.ForeignKey(Delivery, on_delete=models.DO_NOTHING, related_name="reactions", db_constraint=False,
                                 db_index=False)
    kind = models.CharField(max_length=100, help_text="Teams' name for it: like, heart, laugh, or an emoji's id such as "
                            "2705_whiteheavycheckmark")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "kind"], name="one_reaction_of_a_kind")]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.kind}"


class Acknowledgement(models.Model):
    """A person acknowledged one version of a campaign's message: the record a policy's audit export is made of. One
    row a version; found by the delivery's id, so a campaign's are one range of the unique index."""

    class Via(models.TextChoices):
        BUTTON = "button", "The card's button"  # Action.Execute: Teams shows them the card Crier answers with
        FALLBACK = "fallback", "The card's button, on an older Teams"  # Action.Submit: a message with the card's data

    delivery = models.ForeignKey(Delivery, on_delete=models.DO_NOTHING, related_name="acknowledgements",
                                 db_constraint=False, db_index=False)
    version = models.PositiveIntegerField(help_text="The campaign's message_version the person saw: 1, then one more "
                                                    "for each edit.")
    via = models.CharField(max_length=16, choices=Via.choices)
    acknowledged_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "version"], name="one_acknowledgement_a_version")]

    def __str__(self) -> str:
        return f"{self.delivery_id}: version {self.version}"


class PollAnswer(models.Model):
    """A person's answer to a campaign's poll: the options they chose, by their place in the campaign's
    ``poll_options``. One a delivery, changed in place while the poll is open."""

    delivery = models.OneToOneField(Delivery, on_delete=models.DO_NOTHING, related_name="poll_answer",
                                    db_constraint=False, primary_key=True)
    choices = ArrayField(models.PositiveSmallIntegerField(), help_text="The options chosen, by their place (0 first).")
    answered_at = models.DateTimeField(db_default=Now())
    changed_at = models.DateTimeField(null=True, blank=True, help_text="When they last changed their answer.")

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.choices}"


class Click(models.Model):
    """A person opened one of the link buttons of the message Crier sent them, through Crier's signed link (a campaign
    that counts clicks): one row a delivery and link, with how often and when first and last."""

    delivery = models.ForeignKey(Delivery, on_delete=models.DO_NOTHING, related_name="clicks", db_constraint=False,
                                 db_index=False)
    link = models.PositiveSmallIntegerField(help_text="The link button's place in the card, 0 first.")
    clicks = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField(db_default=Now())
    last_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "link"], name="one_click_row_a_link")]

    def __str__(self) -> str:
        return f"{self.delivery_id}: link {self.link} ×{self.clicks}"


class WebhookEndpoint(models.Model):
    """Where an HR system or a dashboard wants to hear about deliveries and opt-outs."""

    class Event(models.TextChoices):
        DELIVERY_SENT = "delivery.sent", "A message was sent"
        DELIVERY_FAILED = "delivery.failed", "A message failed"
        DELIVERY_SKIPPED = "delivery.skipped", "A person was skipped"
        DELIVERY_READ = "delivery.read", "Teams reported a message read"
        DELIVERY_ACKNOWLEDGED = "delivery.acknowledged", "Someone acknowledged a message"
        REACTION_ADDED = "reaction.added", "Someone reacted to a message"
        POLL_ANSWERED = "poll.answered", "Someone answered a poll, or changed their answer"
        OPT_OUT_CREATED = "opt_out.created", "Someone opted out"
        OPT_OUT_DELETED = "opt_out.deleted", "Someone opted back in"

    name = models.CharField(max_length=150, unique=True)
    url = models.URLField(max_length=500, help_text="HTTPS, to a service outside Crier’s own network (see WEBHOOK_ALLOW_PRIVATE_TARGETS).")
    secret = models.CharField(max_length=128, help_text="Signs each call: HMAC-SHA256 of “timestamp.body”.")
    events = models.JSONField(default=list, help_text="The event types it receives.")
    active = models.BooleanField(default=True)
    cursor = models.BigIntegerField(default=0, help_text="The last event it acknowledged.")
    cursor_transaction = models.BigIntegerField(default=0, help_text="That event's transaction.")
    failures = models.PositiveIntegerField(default=0, help_text="Failed calls in a row.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .targets import endpoint_url_validate

        endpoint_url_validate(self.url)
        unknown = set(self.events or []) - set(self.Event.values)
        if unknown:
            from django.core.exceptions import ValidationError

            raise ValidationError({"events": f"Unknown event types: {', '.join(sorted(unknown))}."})


class CurrentTransactionId(models.Func):
    """The id of the transaction writing the row (PostgreSQL's pg_current_xact_id)."""

    template = "(pg_current_xact_id()::text)::bigint"
    output_field = models.BigIntegerField()


class WebhookEvent(models.Model):
    """The outbox: events, kept until every endpoint has had them. Ids are taken before commit, so
    they may become visible out of order; the transaction id lets the dispatcher send only what no
    running transaction can still precede (see delivery.webhooks)."""

    type = models.CharField(max_length=32, db_index=True)
    payload = models.JSONField()
    transaction_id = models.BigIntegerField(db_default=CurrentTransactionId())
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["transaction_id", "id"]
        indexes = [models.Index(fields=["transaction_id", "id"], name="webhook_event_order_idx")]


class WebhookAttempt(models.Model):
    """The delivery log: each call made to an endpoint, with its answer."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    first_event_id = models.BigIntegerField()
    last_event_id = models.BigIntegerField()
    events = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True)
    ok = models.BooleanField()
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]


class MessageChange(models.Model):
    """An edit or a recall of a campaign's sent message, for everyone who received it. Its rows
    (``DeliveryChange``, one per person) are the truth; the counts here move in the same statement
    as each row, so reading progress costs one row."""

    class Action(models.TextChoices):
        EDIT = "edit", "Edit"
        RECALL = "recall", "Recall"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="message_changes")
    action = models.CharField(max_length=16, choices=Action.choices)
    kind = models.CharField(max_length=16, blank=True, help_text="The new message's kind (an edit).")
    text = models.TextField(blank=True, help_text="The new text or notification summary (an edit).")
    card = models.JSONField(null=True, blank=True, help_text="The new Adaptive Card (an edit).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total = models.PositiveIntegerField(default=0, help_text="People whose message it changes.")
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error_summary = models.CharField(max_length=500, blank=True, help_text="The most frequent reasons for failures.")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "change to a sent message"
        verbose_name_plural = "changes to sent messages"
        constraints = [
            # One change at a time per campaign: an edit and a recall racing would leave people with
            # whichever came last.
            models.UniqueConstraint(
                fields=["campaign"], condition=models.Q(status="running"), name="one_running_message_change"
            )
        ]

    def __str__(self) -> str:
        when = timezone.localtime(self.created_at) if self.created_at else None  # the reader's own time zone
        return f"{self.get_action_display()} of “{self.campaign}” ({when:%Y-%m-%d %H:%M})" if when else str(self.campaign)

    @property
    def is_edit(self) -> bool:
        return self.action == self.Action.EDIT


class DeliveryChange(models.Model):
    """What an edit or a recall did to one person's message."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        WORKING = "working", "Calling Teams"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    change = models.ForeignKey(MessageChange, on_delete=models.CASCADE, related_name="rows", db_index=False)
    # Served by the unique constraint below, which starts with it.
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+", db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices, db_default=Status.PENDING)
    error_code = models.CharField(max_length=100, blank=True, db_default="")
    error_message = models.CharField(max_length=1000, blank=True, db_default="")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(db_default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["delivery", "change"], name="one_change_row_per_delivery")]
        # Serves the workers' walk through a change's pending rows and the counts by state.
        indexes = [models.Index(fields=["change", "status", "id"], name="delivery_change_status_idx")]

    def __str__(self) -> str:
        return f"{self.change_id}/{self.delivery_id}: {self.status}"
