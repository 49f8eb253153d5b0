"""Campaigns, their deliveries, direct messages and tests, and the actions' request bodies."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns.members import campaign_listing
from campaigns.models import Audience, Campaign, Category, MessageTemplate
from campaigns.models.content import (
    REMIND_AFTER_LEAST, REMIND_AFTER_MOST, WELCOME_NOT_LISTED, acknowledgement_problems, clicks_problems,
    poll_problems, reminder_problems, urgent_problems,
)
from delivery.reports import campaign_clicks
from campaigns.states import moves_open
from delivery.progress import read as campaign_progress
from delivery.models import Delivery

from .common import RejectUnknownFieldsMixin
from .content import MemberListingSerializer

API_MOVES = ("edit", "schedule", "launch", "pause", "resume", "cancel", "stop_installing", "send_again")  # what the API offers


class ClickCountSerializer(serializers.Serializer):
    title = serializers.CharField(help_text="The button's title.")
    url = serializers.CharField(help_text="Where it leads, as the template writes it (placeholders unfilled).")
    people = serializers.IntegerField()


class PollCountSerializer(serializers.Serializer):
    option = serializers.CharField()
    count = serializers.IntegerField()


class FunnelGroupSerializer(serializers.Serializer):
    value = serializers.CharField(help_text='The field\'s value; "(none)" for people without one, "(all others)" past '
                                  "the 50 largest groups.")
    sent = serializers.IntegerField()
    read = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    answered = serializers.IntegerField()
    clicked = serializers.IntegerField()


class FunnelHourSerializer(serializers.Serializer):
    hour = serializers.IntegerField(help_text="The hour's start, in seconds since 1970 (UTC).")
    sent = serializers.IntegerField(help_text="People sent it by the hour's end (each count is cumulative).")
    read = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    answered = serializers.IntegerField()
    clicked = serializers.IntegerField()


class CampaignFunnelSerializer(serializers.Serializer):
    by = serializers.CharField()
    groups = FunnelGroupSerializer(many=True)
    over_time = FunnelHourSerializer(many=True, help_text=(
        "The whole funnel over time: each hour in which something happened, with how many people had been sent it, "
        "read it, acknowledged it, answered and opened a link by its end; at most 500 points, evenly spaced."))
    acknowledgement = serializers.BooleanField(help_text="Whether the campaign asks for an acknowledgement.")
    poll = serializers.BooleanField(help_text="Whether the campaign has a poll.")
    clicks = serializers.BooleanField(help_text="Whether the campaign counts clicks.")


class CampaignCountsSerializer(serializers.Serializer):
    """Progress, from counters kept as deliveries move (cheap to read during a million-person send)."""

    total = serializers.IntegerField(help_text="People with a delivery row so far.")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Pending, being sent, waiting to retry or for the app to be installed.")
    ambiguous = serializers.IntegerField(
        help_text="Sends retried after a worker stopped while Teams was answering (may have arrived twice)."
    )
    installed = serializers.IntegerField(help_text="People Crier installed the app for, to reach them (install_app).")
    notified = serializers.IntegerField(help_text="Urgent campaigns: people whose activity feed was sent the pop-up.")
    notice_failed = serializers.IntegerField(
        help_text="Urgent campaigns: people whose pop-up Microsoft Graph refused (the audit log says why).")
    read = serializers.IntegerField(
        help_text="People Teams reported read it (read receipts): a lower bound, since a person or an organisation can "
        "turn read receipts off.")
    acknowledged = serializers.IntegerField(
        help_text="Campaigns that ask for it: people who acknowledged the message as it is now (a policy's edit asks "
        "everyone again).")
    answered = serializers.IntegerField(help_text="Campaigns with a poll: people who answered it.")
    clicked = serializers.IntegerField(help_text="Campaigns that count clicks: people who opened a link button.")
    clicks = serializers.ListField(
        child=ClickCountSerializer(), help_text="Campaigns that count clicks: the people who opened each link button, "
        "in the card's order; empty otherwise.")
    poll = serializers.ListField(
        child=PollCountSerializer(), help_text="Campaigns with a poll: how many people chose each option, in the "
        "poll's order (several each, in a poll that takes several answers); empty without a poll.")
    reactions = serializers.DictField(
        child=serializers.IntegerField(), help_text="Reactions to the message by kind (like, heart…), most first.")
    rate_per_second = serializers.FloatField(help_text="Messages sent per second over the last 10 seconds.")
    eta_seconds = serializers.IntegerField(allow_null=True, help_text="Estimated seconds left at the current rate.")


class CampaignSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A message to an audience. status and the dates change through the launch, schedule, pause,
    resume and cancel actions."""

    category = serializers.SlugRelatedField(slug_field="slug", queryset=Category.objects.all())
    counts = serializers.SerializerMethodField(
        help_text="Deliveries per state. Given for a single campaign; null in lists."
    )
    actions = serializers.SerializerMethodField(
        help_text="What can be done with it as it is now: `edit` (PATCH), and the actions `schedule`, `launch`, "
        "`pause`, `resume`, `cancel`, `stop_installing`, `send_again` (POST .../{action}/, the last two as "
        ".../stop-installing/ and .../send-again/). Any "
        "other is refused with 409 `invalid_state`."
    )
    poll_options = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False,
        help_text="The answers to choose from: 2 to 10 texts of at most 100 characters, told apart regardless of case; "
        "results are counted by their place in this list. [] for no poll.")
    remind_after = serializers.DurationField(
        format="iso-8601", min_value=REMIND_AFTER_LEAST, max_value=REMIND_AFTER_MOST, allow_null=True, required=False,
        help_text="How long after the campaign (or the reminder before) has sent to everyone a reminder goes, as an "
        "ISO 8601 duration (P2D: 2 days; PT4H: 4 hours), from 1 minute to 90 days. Null with no reminders.")
    follow_up_who = serializers.ChoiceField(
        choices=[("", "It follows no campaign"), *Campaign.FollowUp.choices], read_only=True,
        help_text="Whom of the campaign it follows (`follows`) it was sent to: `failed`, `not_read`, "
        "`not_acknowledged` or `not_answered`; \"\" for a campaign that follows none.")
    listing = serializers.SerializerMethodField(
        help_text="For an audience that is an Entra ID group or a team: the members its launch listed, which are the "
        "people it is sent to (or why the listing failed). Given for a single campaign; null in lists and otherwise."
    )

    class Meta:
        model = Campaign
        fields = [
            "id", "public_id", "name", "kind", "template", "audience", "category", "install_app", "urgent",
            "urgent_text", "acknowledgement", "message_version", "poll_question", "poll_options", "poll_multiple",
            "poll_closes_at", "track_clicks", "remind_who", "remind_after", "remind_times", "remind_template",
            "follows", "follow_up_who", "status",
            "status_reason", "send_at", "approved_at", "launched_at", "materialised_at", "completed_at", "cancelled_at", "counts", "actions",
            "listing",
        ]
        read_only_fields = [
            "id", "public_id", "message_version", "follows", "follow_up_who", "status", "status_reason", "send_at",
            "approved_at", "launched_at",
            "materialised_at", "completed_at", "cancelled_at",
        ]
        extra_kwargs = {
            "send_at": {"help_text": "When a scheduled campaign starts; set it with the schedule action."},
            "install_app": {"help_text": (
                "For people who lack the app (Teams answers so, or never told Crier of them), Crier installs it "
                "through Microsoft Graph, then sends. Never for someone who removed or blocked it. Defaults to the "
                "organisation's INSTALL_APP_DEFAULT; changing it withdraws an approval. Each delivery's `install` "
                "says what came of it.")},
            "urgent": {"help_text": (
                "Also pops up in each person's Teams activity feed, with a sound, linking to the message, once it is "
                "sent. Only for announcements; an urgent campaign always needs an approver's approval, and changing "
                "this or urgent_text withdraws one. Each delivery's `notice` says what came of it.")},
            "urgent_text": {"help_text": "What the pop-up says (up to 150 characters, the same for everyone: no "
                            "placeholders). Required when urgent."},
            "acknowledgement": {"help_text": (
                "`asked`: the card carries a button each person presses to acknowledge the message; `policy`: the "
                "same, for a message everyone must acknowledge, in a mandatory category, acknowledged again after "
                "each edit of the sent message (the audit export lists who acknowledged which version, when). A "
                "markdown message is sent as a card to carry the button. \"\" asks nothing. Changing it withdraws an "
                "approval.")},
            "message_version": {"help_text": "1 for the message as first sent, one more for each edit of it."},
            "poll_question": {"help_text": (
                "A question each person answers in the card (docs/engagement.md): with poll_options, a poll; empty "
                "for none. The same for everyone: no placeholders.")},
            "poll_multiple": {"help_text": "Each person may choose several options."},
            "track_clicks": {"help_text": (
                "Count who opens the card's link buttons (Action.OpenUrl): each leads through Crier, signed for the "
                "one person (docs/engagement.md). Off by default, for privacy; needs PUBLIC_BASE_URL. Links inside the "
                "text are not counted.")},
            "remind_who": {"help_text": (
                "Send reminders, each a campaign of its own (docs/engagement.md), to the people it reached who have not "
                "read it (`not_read`: where Teams reports reads, so also those who turned read receipts off), "
                "acknowledged it (`not_acknowledged`) or answered its poll (`not_answered`). \"\" for none. Only for "
                "announcements; covered by the campaign's approval, so changing it withdraws one.")},
            "remind_times": {"min_value": 1, "max_value": 5,
                             "help_text": "At most how many reminders, 1 to 5; each waits until the one before completed."},
            "remind_template": {"help_text": (
                "The reminders' message: null sends the campaign's own again. It carries the same button and poll.")},
            "follows": {"help_text": (
                "The campaign this one follows up (a reminder, or sent again to those it failed for); null otherwise. "
                "Acknowledgements and answers given on its card count for that campaign.")},
            "poll_closes_at": {"help_text": (
                "When the poll stops taking answers (ISO 8601, in the future when set); until then a person may change "
                "theirs. Null: open for as long as the message is there.")},
        }

    @extend_schema_field(CampaignCountsSerializer(allow_null=True))
    def get_counts(self, campaign: Campaign) -> dict[str, int] | None:
        if not self.context.get("with_counts"):
            return None
        counts = campaign_progress(campaign)
        by_place = counts.get("poll") or {}
        counts["poll"] = [{"option": option, "count": by_place.get(n, 0)}
                          for n, option in enumerate(campaign.poll_options or []) if campaign.poll_question]
        counts["clicks"] = campaign_clicks(campaign=campaign, counts=counts.get("clicks") or {})
        return counts

    @extend_schema_field(MemberListingSerializer(allow_null=True))
    def get_listing(self, campaign: Campaign) -> dict | None:
        if not self.context.get("with_counts"):
            return None
        listing = campaign_listing(campaign=campaign)
        return MemberListingSerializer(listing).data if listing is not None else None

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=API_MOVES)))
    def get_actions(self, campaign: Campaign) -> list[str]:
        return [move for move in moves_open(campaign) if move in API_MOVES]

    def validate(self, attrs):
        kind = attrs.get("kind", self.instance.kind if self.instance else None)
        audience = attrs.get("audience", self.instance.audience if self.instance else None)
        if kind == Campaign.Kind.WELCOME and audience is not None and audience.kind in Audience.LISTED_KINDS:
            raise serializers.ValidationError({"audience": [WELCOME_NOT_LISTED]})
        urgency = {name: attrs.get(name, getattr(self.instance, name) if self.instance else default)
                   for name, default in (("urgent", False), ("urgent_text", ""))}
        if problems := urgent_problems(kind=kind, **urgency):
            raise serializers.ValidationError({field: [problem] for field, problem in problems.items()})
        category = attrs.get("category", self.instance.category if self.instance else None)
        acknowledgement = attrs.get("acknowledgement", self.instance.acknowledgement if self.instance else "")
        if problems := acknowledgement_problems(kind=kind, acknowledgement=acknowledgement,
                                                category_mandatory=category.mandatory if category else None):
            raise serializers.ValidationError({field: [problem] for field, problem in problems.items()})
        poll = {name: attrs.get(name, getattr(self.instance, name) if self.instance else default)
                for name, default in (("poll_question", ""), ("poll_options", []), ("poll_closes_at", None))}
        if problems := poll_problems(question=poll["poll_question"], options=poll["poll_options"],
                                     closes_at=poll["poll_closes_at"], closes_changed="poll_closes_at" in attrs):
            raise serializers.ValidationError({field: [problem] for field, problem in problems.items()})
        if attrs.get("poll_closes_at") is not None:  # to the second, as the admin shows and keeps it
            attrs["poll_closes_at"] = attrs["poll_closes_at"].replace(microsecond=0)
        if problems := clicks_problems(track_clicks=attrs.get("track_clicks", False)):
            raise serializers.ValidationError({field: [problem] for field, problem in problems.items()})
        reminders = {name: attrs.get(name, getattr(self.instance, name) if self.instance else default) for name, default in
                     (("remind_who", ""), ("remind_after", None), ("remind_times", 1))}
        if problems := reminder_problems(kind=kind, acknowledgement=acknowledgement,
                                         poll_question=poll["poll_question"], **reminders):
            raise serializers.ValidationError({field: [problem] for field, problem in problems.items()})
        if "poll_options" in attrs and isinstance(attrs["poll_options"], list):
            attrs["poll_options"] = [str(option).strip() for option in attrs["poll_options"]]
        if "poll_question" in attrs:
            attrs["poll_question"] = attrs["poll_question"].strip()
        return attrs

    def validate_kind(self, value: str) -> str:
        if self.instance is not None and value != self.instance.kind:
            raise serializers.ValidationError("The kind is chosen when the campaign is created.")
        return value


class DirectMessageSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A message to named people, now."""

    template = serializers.PrimaryKeyRelatedField(queryset=MessageTemplate.objects.all())
    category = serializers.SlugRelatedField(slug_field="slug", queryset=Category.objects.all())
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=255), min_length=1, max_length=1000,
        help_text="External ids of the people, up to 1,000.",
    )
    name = serializers.CharField(max_length=200, required=False, help_text="For the admin and the results.")


MAX_TEST_RECIPIENTS = 5  # a test is for the few people who check a message, not a way round approval


class TestSendSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    recipients = serializers.ListField(
        child=serializers.CharField(max_length=255), min_length=1, max_length=MAX_TEST_RECIPIENTS,
        help_text=f"External ids of the people who check the message, up to {MAX_TEST_RECIPIENTS}.",
        error_messages={"max_length": f"A test goes to at most {MAX_TEST_RECIPIENTS} people a call."},
    )


class TemplatePreviewSerializer(serializers.Serializer):
    recipient = serializers.CharField(help_text="The external id it was rendered for.")
    activity = serializers.DictField(help_text="The Bot Framework message activity Teams would receive.")


class CampaignPauseSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CampaignScheduleSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """When a scheduled campaign starts."""

    send_at = serializers.DateTimeField(help_text="When to start, in the future (ISO 8601).")


class DeliverySerializer(serializers.ModelSerializer):
    """What happened to one person in a campaign."""

    recipient = serializers.CharField(source="recipient.external_id", read_only=True, help_text="External id.")

    class Meta:
        model = Delivery
        fields = [
            "id", "recipient", "status", "skip_reason", "error_code", "error_message", "last_status_code",
            "attempts", "install", "notice", "read_at", "acknowledged_at", "activity_id", "created_at", "finished_at",
        ]
        read_only_fields = fields
